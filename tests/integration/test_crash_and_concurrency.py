"""SIGTERM, SIGKILL and several controllers on one database, with real processes.

SPEC section 7 and criteria 6-7 for the local executor: an interrupted attempt is
recorded as ``controller_interrupted``; after a SIGKILL the next session adopts the
dead session's attempts and finishes their records; several controllers never claim
one phase twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from batchdrain.db import Database
from batchdrain.domain import PhaseState
from tests.integration.helpers import attempts, cli, controller_process, phases

DEADLINE = 60


def wait_for(predicate, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_sigterm_stops_selecting_and_records_interrupted(database_url, workdir, capsys):
    common = ["--database-url", database_url]
    marker = workdir / "started"
    slow = ["python3", "-c", f"import time, pathlib; pathlib.Path('{marker}').touch(); "
                             "print('working', flush=True); time.sleep(60)"]
    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "slow", *common, "--", *slow)[0] == 0
    for i in range(3):
        assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", f"later-{i}", *common, "--", "true")[0] == 0
    proc = controller_process("drain", *common, "--parallelism", "1", "--term-grace-seconds", "1",
                              "--executor", "local", "--quiet", cwd=workdir)
    try:
        wait_for(marker.exists, "the slow phase to start")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    (row,) = attempts(database_url)  # the later phases were never started
    assert row.phase_id == "slow" and row.failure_class == "controller_interrupted"
    assert "SIGTERM" in row.message and row.logs
    stdout = next(p for p in row.logs if p.stream == "stdout")
    assert b"working" in Path(stdout.url).read_bytes()
    pid = row.raw_status["pid"]
    assert not process_alive(pid)
    state = phases(database_url)
    assert state[("r", "slow")].state is PhaseState.FAILED  # retryable, not stuck EXECUTING
    assert all(state[("r", f"later-{i}")].state is PhaseState.QUEUED for i in range(3))
    db = Database(database_url)
    try:
        assert db.sessions()[0].status == "interrupted"
    finally:
        db.dispose()


def test_sigkill_then_restart_adopts_and_loses_nothing(database_url, workdir, capsys):
    common = ["--database-url", database_url]
    started = workdir / "started"
    started.mkdir()
    for i in range(6):
        cmd = ["python3", "-c", f"import time, pathlib; pathlib.Path('{started}/{i}').touch(); "
                                "print('step 1', flush=True); time.sleep(6); print('step 2')"]
        assert cli(capsys, "enqueue", "--run-id", "crash", "--phase-id", f"p{i}", *common, "--", *cmd)[0] == 0
    proc = controller_process("drain", *common, "--parallelism", "2", "--lease-seconds", "3",
                              "--executor", "local", "--quiet", cwd=workdir)
    try:
        wait_for(lambda: len(list(started.iterdir())) >= 2, "two phases to start")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    running = [a for a in attempts(database_url) if a.status == "running"]
    assert len(running) == 2
    orphan_pids = [a.raw_status["pid"] for a in running]

    time.sleep(3.5)  # lease (3s) of the dead session expires; its phases are still running
    assert all(process_alive(pid) for pid in orphan_pids)
    # The adopted attempts fail with no retry backoff, so that the last session below retries them.
    code, _out, err = cli(capsys, "drain", *common, "--parallelism", "2", "--lease-seconds", "3",
                         "--executor", "local", "--quiet", "--retry-delay-seconds", "0")
    assert code == 0, err
    rows = attempts(database_url)
    assert all(r.status == "finished" for r in rows), "an attempt was left unrecorded"
    assert all(not process_alive(pid) for pid in orphan_pids)
    adopted = [r for r in rows if r.attempt == 1 and r.failure_class == "controller_interrupted"]
    assert {r.phase_id for r in adopted} == {a.phase_id for a in running}
    assert all("died before this attempt finished" in r.message for r in adopted)
    # no attempt number used twice, nothing lost: every phase ends COMPLETE or retryable
    assert len({(r.phase_id, r.attempt) for r in rows}) == len(rows)
    state = phases(database_url)
    assert all(p.state in (PhaseState.COMPLETE, PhaseState.FAILED) for p in state.values())
    assert sum(p.state is PhaseState.COMPLETE for p in state.values()) == 4
    # and one more session retries the interrupted ones to completion
    assert cli(capsys, "drain", *common, "--executor", "local", "--quiet")[0] == 0
    assert all(p.state is PhaseState.COMPLETE for p in phases(database_url).values())


@pytest.mark.parametrize("controllers", [3])
def test_several_controllers_never_claim_a_phase_twice(database_url, workdir, capsys, controllers):
    common = ["--database-url", database_url]
    rows = "\n".join(
        f"- {{run_id: run-{i % 4}, phase_id: p{i:03d}, command: [python3, -c, 'import time; time.sleep(0.2)']}}"
        for i in range(60))
    (workdir / "backlog.yaml").write_text(rows + "\n")
    assert cli(capsys, "import", str(workdir / "backlog.yaml"), *common)[0] == 0
    procs = [controller_process("drain", *common, "--parallelism", "4", "--executor", "local", "--quiet",
                                cwd=workdir) for _ in range(controllers)]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
    done = attempts(database_url)
    per_phase = Counter(a.phase_id for a in done)
    assert len(per_phase) == 60 and set(per_phase.values()) == {1}, per_phase.most_common(3)
    assert len({a.session_id for a in done}) >= 2, "only one controller did any work"
    assert all(p.state is PhaseState.COMPLETE for p in phases(database_url).values())


def test_sqlite_threads_queue_for_the_writer_instead_of_timing_out_on_the_pool(tmp_path):
    """Forty workers behind one slow transaction: they wait their turn, none fails.

    The drain benchmark at 100,000 phases (parallelism 100) on a starved host failed
    with SQLAlchemy's pool TimeoutError: the 15 pooled connections were held by threads
    waiting for SQLite's one writer, and the other threads gave up on the pool.
    """
    import threading

    from batchdrain.db import NewPhase
    from batchdrain.domain import PhaseSpec

    db = Database(f"sqlite:///{tmp_path}/queue.db")
    db.upgrade()
    db.enqueue([NewPhase("r", f"p{i}", PhaseSpec(command=("true",))) for i in range(40)])
    session = db.create_session(executor="local", settings={}, identity={})
    db.engine.pool._timeout = 0.5  # the pool's 30 s, shortened so that the test is quick
    errors: list[BaseException] = []

    def claim(phase) -> None:
        try:
            assert db.claim(phase, session_id=session, lease_seconds=60, executor="local",
                            command=["true"], image=None, identity={}) is not None
        except BaseException as err:  # collected, asserted on below
            errors.append(err)

    threads = [threading.Thread(target=claim, args=(p,)) for p in db.phases(["r"])]
    # A transaction of this process that takes 2 s (a starved thread, a long read).
    with db._engine.core():
        for t in threads:
            t.start()
        time.sleep(2)
    for t in threads:
        t.join(timeout=DEADLINE)
    assert [repr(e) for e in errors] == []
    assert Counter(p.state for p in db.phases(["r"])) == {PhaseState.EXECUTING: 40}


def test_a_second_controller_says_which_phases_wait_for_a_live_session_and_until_when(database_url, workdir,
                                                                                      capsys):
    """Before: started while another controller held the phases, drain exited 0 at once with
    "0 attempt(s)" and no word of them."""
    common = ["--database-url", database_url]
    marker = workdir / "started"
    slow = ["python3", "-c", f"import time, pathlib; pathlib.Path('{marker}').touch(); time.sleep(30)"]
    assert cli(capsys, "enqueue", "--run-id", "held", "--phase-id", "slow", *common, "--", *slow)[0] == 0
    holder = controller_process("drain", *common, "--executor", "local", "--quiet", "--lease-seconds", "120",
                                cwd=workdir)
    try:
        wait_for(marker.exists, "the holder's phase to start")
        code, _out, err = cli(capsys, "drain", *common, "--executor", "local", "--quiet", "--lease-seconds", "120")
        assert code == 0, err
        (row,) = attempts(database_url)
        assert row.status == "running" and row.adopted_by is None  # the live holder keeps it
        flat = " ".join(err.split())
        assert f"waiting: held/slow waits for session {row.session_id}" in flat, err
        assert f"pid {holder.pid}, heart-beating) until its lease ends at " in flat, err
    finally:
        holder.kill()
        holder.communicate(timeout=DEADLINE)
