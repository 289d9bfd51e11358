"""Attempt ends written in groups (one transaction for many), on real SQLite files and Postgres.

Each end in a group is written as it would have been alone (its columns, its unwritten
progress, its raw status merged, its phase released, an uncharged end not counted); a
group with one end whose attempt is gone writes none of them; and a drain at a
parallelism that makes groups records every attempt exactly once (on Postgres the drain
writes one end per transaction: see ``AttemptRecorder``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from batchdrain.db import AttemptEnd, AttemptOpening, Claim, Database, DatabaseUnavailable, NewPhase
from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, Phase, PhaseSpec, PhaseState
from batchdrain.drain import DrainSession, make_plan
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.kube import RetryingKubeApi
from batchdrain.logstore import FileLogSink
from batchdrain.settings import Settings
from tests.unit.fake_kube import Exit, FakeKube, Out, Schedule, Start

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _opening(_phase: Phase, attempt: int) -> AttemptOpening:
    return AttemptOpening(command=("true",), image=None, identity={"attempt": attempt})


def _claimed(url: str, count: int) -> tuple[Database, list[Claim]]:
    db = Database(url)
    db.upgrade()
    db.enqueue([NewPhase("run", f"p{i}", PhaseSpec(command=("true",))) for i in range(count)])
    session = db.create_session(executor="kubernetes", settings={}, identity={})
    plan = make_plan(db, Settings(database_url=url)).phases
    claims = db.claim_some(plan, want=count, session_id=session, lease_seconds=600, executor="kubernetes",
                           opening=_opening)
    assert len(claims) == count
    return db, sorted(claims, key=lambda c: c.phase.phase_id)


def test_every_end_of_a_group_is_written_as_it_would_be_alone(database_url):
    db, (ok, failed, uncharged, parked) = _claimed(database_url, 4)
    retry_at = NOW + dt.timedelta(minutes=5)
    ends = [
        AttemptEnd(attempt_pk=ok.attempt_pk, phase_state=PhaseState.COMPLETE,
                   result=AttemptResult(FailureClass.SUCCEEDED, "exit 0", 0, finished_at=NOW, job_name="job-ok"),
                   progress=AttemptProgress(pod_name="job-ok-x", node="node-1")),
        AttemptEnd(attempt_pk=failed.attempt_pk, phase_state=PhaseState.FAILED, eligible_at=retry_at,
                   result=AttemptResult(FailureClass.EXIT_CODE, "exit 3", 3, finished_at=NOW,
                                        raw_status={"reason": "Error"}),
                   progress=AttemptProgress(pid=4242, host="box")),
        AttemptEnd(attempt_pk=uncharged.attempt_pk, phase_state=PhaseState.QUEUED,
                   result=AttemptResult(FailureClass.API_ERROR, "api lost", None, finished_at=NOW, charged=False)),
        AttemptEnd(attempt_pk=parked.attempt_pk, phase_state=PhaseState.SKIPPED, parked_reason="same failure 3x",
                   result=AttemptResult(FailureClass.EXIT_CODE, "exit 1", 1, finished_at=NOW)),
    ]
    db.finish_attempts(list(reversed(ends)))  # the order given does not matter
    attempts = {a.phase_id: a for a in db.attempts()}
    phases = {p.phase_id: p for p in db.phases()}
    assert {a.status for a in attempts.values()} == {"finished"}
    assert (attempts["p0"].failure_class, attempts["p0"].exit_code, attempts["p0"].job_name) == ("succeeded", 0,
                                                                                               "job-ok")
    assert attempts["p0"].pod_names == ("job-ok-x",) and attempts["p0"].node == "node-1"
    assert attempts["p1"].raw_status is not None
    assert dict(attempts["p1"].raw_status) == {"pid": 4242, "host": "box", "reason": "Error"}
    assert (attempts["p2"].failure_class, attempts["p3"].failure_class) == ("api_error", "exit_code")
    assert [(p.state, p.lease_owner) for p in phases.values()] == [
        (PhaseState.COMPLETE, None), (PhaseState.FAILED, None), (PhaseState.QUEUED, None),
        (PhaseState.SKIPPED, None)]
    assert (phases["p0"].last_failure_class, phases["p1"].last_failure_class) == (None, "exit_code")
    assert phases["p1"].last_failure_reason == "exit 3" and phases["p1"].eligible_at == retry_at
    assert [phases[p].retry_base for p in ("p0", "p1", "p2", "p3")] == [0, 0, 1, 0]  # uncharged: not counted
    assert phases["p3"].parked_reason == "same failure 3x"
    db.dispose()


def test_a_group_with_an_attempt_gone_writes_none_of_its_ends(database_url):
    db, claims = _claimed(database_url, 3)
    ends = [AttemptEnd(attempt_pk=pk, phase_state=PhaseState.COMPLETE,
                       result=AttemptResult(FailureClass.SUCCEEDED, "exit 0", 0, finished_at=NOW))
            for pk in [c.attempt_pk for c in claims] + [10**9]]
    with pytest.raises(DatabaseUnavailable, match=f"attempt {10**9} vanished"):
        db.finish_attempts(ends)
    assert {a.status for a in db.attempts()} == {"running"}
    assert {p.state for p in db.phases()} == {PhaseState.EXECUTING}
    db.dispose()


def test_a_drain_whose_ends_are_grouped_records_every_attempt_once(database_url, tmp_path: Path):
    db = Database(database_url)
    db.upgrade()
    count = 300
    db.enqueue([NewPhase(f"run-{i % 3}", f"p{i:03d}", PhaseSpec(command=("true",))) for i in range(count)])
    settings = Settings(database_url=database_url, parallelism=60, job_create_rate=1e9)
    script = (Schedule(), Start(), Out(b"done\n"), Exit(0))
    fake = FakeKube(script_for=lambda _job: script)
    executor = KubernetesExecutor(RetryingKubeApi(fake, settings), settings)  # type: ignore[arg-type]
    session = DrainSession(db=db, sink=FileLogSink(tmp_path / "logs"), executor=executor, settings=settings)
    outcome = session.run()
    assert outcome.exit_code == 0
    per_phase = Counter((a.run_id, a.phase_id) for a in db.attempts())
    assert len(per_phase) == count and set(per_phase.values()) == {1}
    assert {(a.status, a.failure_class) for a in db.attempts()} == {("finished", "succeeded")}
    assert {p.state for p in db.phases()} == {PhaseState.COMPLETE}
    ends = session._recorder.ends
    # Grouped on SQLite; on Postgres each end alone (a group could deadlock with the heartbeat).
    if db.backend == "sqlite":
        assert ends is not None and ends.failed_groups == 0, ends and ends.last_failure
        assert ends.grouped == count  # every end went through a group (of one or more)
    else:
        assert ends is None
    db.dispose()
