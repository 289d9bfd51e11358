"""Claims in batches from a window of the plan, progress written in batches: on real databases.

Several controller processes claim from the same head of the queue (``claim_some``
with ``FOR UPDATE SKIP LOCKED`` on Postgres, the single writer on SQLite) and no phase
gets two attempts; a claimed phase a stopping session will not run goes back as it
was; progress an executor reports reaches readers of the database while the attempt
still runs, and ends up on the attempt's record.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from batchdrain.db import AttemptOpening, Database, NewPhase
from batchdrain.domain import Phase, PhaseSpec, PhaseState
from batchdrain.drain import DrainSession, make_plan
from batchdrain.drain.claiming import CLAIM_BATCH, PlanCursor
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.executors.local import LocalExecutor
from batchdrain.kube import RetryingKubeApi
from batchdrain.logstore import FileLogSink
from batchdrain.settings import Settings
from tests.unit.fake_kube import Exit, FakeKube, Gate, Out, Schedule, Start

DEADLINE = 60
PHASES = 1000
# No controller claims more than this, so all three must claim for the backlog to be
# drained, however the machine schedules them: a busy machine once let one process
# claim all 1,000 before the others had planned, and the test proved nothing concurrent.
SHARE = PHASES * 2 // 5


def _opening(_phase: Phase, attempt: int) -> AttemptOpening:
    return AttemptOpening(command=("true",), image=None, identity={"attempt": attempt})


def _claim_everything(url: str, start: Any, out: Any) -> None:
    """One controller: plan, claim up to CLAIM_BATCH per call from a window, until nothing is left."""
    db = Database(url)
    session = db.create_session(executor="local", settings={}, identity={})
    calls = empty = claimed = 0
    start.wait()  # a barrier: every controller has its session before any claims
    while claimed < SHARE:
        cursor = PlanCursor(make_plan(db, Settings(database_url=url), exclude_session=session).phases)
        if not cursor:
            break
        while cursor and claimed < SHARE:
            window = cursor.window()
            want = min(CLAIM_BATCH, len(window))
            got = db.claim_some(window, want=want, session_id=session, lease_seconds=600, executor="local",
                                opening=_opening)
            calls += 1
            empty += not got
            claimed += len(got)
            cursor.settle(window, {c.phase.created_seq for c in got}, wanted=want)
    db.dispose()
    out.put((session, calls, empty))


def _backlog(url: str, count: int) -> Database:
    db = Database(url)
    db.upgrade()
    db.enqueue([NewPhase(f"run-{i % 3}", f"p{i:04d}", PhaseSpec(command=("true",))) for i in range(count)])
    return db


def test_three_processes_claiming_batches_from_one_head_never_give_a_phase_two_attempts(database_url):
    db = _backlog(database_url, PHASES)
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_claim_everything, args=(database_url, start, out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=DEADLINE * 3) for _ in procs]
    for proc in procs:
        proc.join(timeout=DEADLINE)
        assert proc.exitcode == 0
    rows = db.attempts()
    per_phase = Counter((a.run_id, a.phase_id) for a in rows)
    assert len(per_phase) == PHASES and set(per_phase.values()) == {1}, per_phase.most_common(3)
    held = {p.key: p for p in db.phases()}
    for attempt in rows:
        phase = held[(attempt.run_id, attempt.phase_id)]
        assert phase.state is PhaseState.EXECUTING and phase.attempts == attempt.attempt == 1
        assert phase.lease_owner == attempt.session_id and attempt.identity["attempt"] == 1
    assert len({a.session_id for a in rows}) == 3, Counter(a.session_id for a in rows)
    assert sum(calls for _, calls, _ in results) >= PHASES // CLAIM_BATCH
    db.dispose()


def test_a_claim_takes_the_first_free_phases_of_its_window_and_skips_the_held_ones(database_url):
    db = _backlog(database_url, 10)
    plan = make_plan(db, Settings(database_url=database_url)).phases
    other = db.create_session(executor="local", settings={}, identity={})
    mine = db.create_session(executor="local", settings={}, identity={})
    assert db.claim(plan[1], session_id=other, lease_seconds=600, executor="local", command=["true"], image=None,
                    identity={}) is not None
    assert db.claim(plan[2], session_id=other, lease_seconds=600, executor="local", command=["true"], image=None,
                    identity={}) is not None
    cursor = PlanCursor(plan)
    window = cursor.window()
    got = db.claim_some(window, want=3, session_id=mine, lease_seconds=600, executor="local", opening=_opening)
    assert [c.phase.phase_id for c in got] == ["p0000", "p0003", "p0004"]
    assert [c.attempt for c in got] == [1, 1, 1]
    lost = cursor.settle(window, {c.phase.created_seq for c in got}, wanted=3)
    assert [p.phase_id for p in lost] == ["p0001", "p0002"]
    assert [p.phase_id for p in cursor.window()] == [f"p{i:04d}" for i in range(5, 10)]
    db.dispose()


def test_a_phase_claimed_for_a_stopping_session_goes_back_as_it_was(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'backlog.db'}"
    db = _backlog(url, 2)
    settings = Settings(database_url=url, parallelism=2)
    session = DrainSession(db=db, sink=FileLogSink(tmp_path / "logs"), executor=LocalExecutor(),
                           settings=settings)
    session.session_id = db.create_session(executor="local", settings={}, identity={})
    window = PlanCursor(make_plan(db, settings).phases).window()
    claims = session._claim(window, 2)
    assert len(claims) == 2 and {p.state for p in db.phases()} == {PhaseState.EXECUTING}
    session.stop.request(0)
    planned = {p.created_seq: p for p in window}
    for claim, launch in claims:
        session._run_claimed(planned[claim.phase.created_seq], claim, launch)
    back = db.phases()
    assert [(p.state, p.attempts, p.lease_owner) for p in back] == [(PhaseState.QUEUED, 0, None)] * 2
    assert db.attempts() == []
    db.dispose()


def test_progress_written_in_batches_reaches_readers_while_the_attempt_runs(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'backlog.db'}"
    db = _backlog(url, 1)
    settings = Settings(database_url=url, parallelism=1, job_create_rate=1e9)
    gate = threading.Event()
    script = (Schedule(), Start(), Out(b"working\n"), Gate(gate), Exit(0))
    fake = FakeKube(script_for=lambda _job: script)
    executor = KubernetesExecutor(RetryingKubeApi(fake, settings), settings)  # type: ignore[arg-type]
    session = DrainSession(db=db, sink=FileLogSink(tmp_path / "logs"), executor=executor, settings=settings)
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(session.run()), daemon=True)
    runner.start()
    reader = Database(url)  # another connection, as `batchdrain sessions watch` reads
    try:
        deadline = time.monotonic() + DEADLINE
        seen = []
        while time.monotonic() < deadline:
            seen = [a for a in reader.attempts() if a.status == "running" and a.pod_names and a.node]
            if seen:
                break
            time.sleep(0.05)
        assert seen, "the running attempt's pod and node never reached the database"
        assert seen[0].job_name and seen[0].namespace and seen[0].pod_uid
    finally:
        gate.set()
        runner.join(timeout=DEADLINE)
    assert outcome and outcome[0].exit_code == 0
    (done,) = reader.attempts()
    assert done.status == "finished" and done.failure_class == "succeeded"
    assert done.job_name == seen[0].job_name and done.pod_names == seen[0].pod_names and done.node == seen[0].node
    assert done.namespace == seen[0].namespace
    reader.dispose()
    db.dispose()


def test_a_heartbeat_moves_the_session_and_extends_the_leases_of_its_phases_only(database_url):
    db = _backlog(database_url, 3)
    plan = make_plan(db, Settings(database_url=database_url)).phases
    mine = db.create_session(executor="local", settings={}, identity={})
    other = db.create_session(executor="local", settings={}, identity={})
    db.claim_some(plan[:2], want=2, session_id=mine, lease_seconds=1, executor="local", opening=_opening)
    db.claim_some(plan[2:], want=1, session_id=other, lease_seconds=1, executor="local", opening=_opening)
    before = db.session(mine).heartbeat_at
    db.heartbeat(mine, 600)
    assert db.session(mine).heartbeat_at > before
    leases = {r.attempt.phase_id: r.lease_expires_at for r in db.open_attempts_elsewhere(session_id="nobody")}
    assert all(leases[p.phase_id] is not None and leases[p.phase_id] > before + dt.timedelta(seconds=500)
               for p in plan[:2])
    assert leases[plan[2].phase_id] is not None and leases[plan[2].phase_id] < before + dt.timedelta(seconds=60)
    db.dispose()
