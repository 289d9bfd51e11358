"""Faults on a real cluster (issue 6.3, and the node_lost / api_error classes of issue 3).

Each test breaks one thing while a drain runs and then checks what must hold whatever
happened: every phase ends COMPLETE or FAILED with every attempt recorded (class,
message, exit code or the reason there is none, log pointers), no Python traceback,
no Job or pod of the session left behind, and logs that lost and repeated nothing.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections import Counter
from pathlib import Path

from batchdrain.db import AttemptRecord, Database
from tests.e2e.conftest import Drainer, wait_for
from tests.faults.conftest import Control, apiserver_ready

LINES = 20
AFTER_OUTAGE = ("--scheduling-timeout-seconds", "300", "--start-timeout-seconds", "300")


def counting_phase(seconds: float, *, lines: int = LINES) -> list[str]:
    """A phase printing numbered lines over ``seconds``: lost or repeated lines show."""
    pause = seconds / lines
    return ["python3", "-c",
            f"import time\nfor i in range({lines}):\n    print('line', i, flush=True); time.sleep({pause})"]


def attempts_of(drainer: Drainer) -> list[AttemptRecord]:
    db = Database(drainer.db_url)
    try:
        return db.attempts()
    finally:
        db.dispose()


def payload(url: str) -> bytes:
    data = Path(url).read_bytes()
    marker = b"[batchdrain] ================================\n"
    return data[data.index(marker) + len(marker):]


def running_pods(drainer: Drainer) -> int:
    pods = drainer.cluster.core.list_namespaced_pod(
        drainer.namespace, label_selector="app.kubernetes.io/managed-by=batchdrain").items
    return sum(1 for p in pods if p.status.phase == "Running")


def assert_clean_outcome(drainer: Drainer, done: subprocess.CompletedProcess[str] | tuple[int, str],
                         phases: int) -> list[AttemptRecord]:
    """The invariants every fault must leave intact; returns the attempts."""
    code, err = (done.returncode, done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    assert "Traceback" not in err, err
    attempts = attempts_of(drainer)
    assert attempts, err
    for a in attempts:
        assert a.status == "finished", (a.phase_id, a.status, a.failure_class, a.message)
        assert a.failure_class and a.message, a
        assert a.exit_code is not None or a.exit_code_reason, a
        assert a.logs, a
        for pointer in a.logs:
            assert Path(pointer.url).stat().st_size == pointer.size_bytes, pointer
    by_phase: dict[str, list[AttemptRecord]] = {}
    for a in attempts:
        by_phase.setdefault(a.phase_id, []).append(a)
    assert len(by_phase) == phases, (code, err)
    for runs in by_phase.values():  # attempts of one phase never overlap in time
        spans = sorted((a.started_at, a.finished_at) for a in runs)
        assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans)), spans
    for session in {a.session_id for a in attempts}:
        wait_for(lambda s=session: drainer.session_objects(s) == [], f"session {session}'s Jobs and pods to go",
                 timeout=90)
    return attempts


def assert_lines_exactly_once(attempt: AttemptRecord) -> None:
    stdout = next(p for p in attempt.logs if p.stream in ("stdout", "combined"))
    lines = Counter(payload(stdout.url).decode().splitlines())
    expected = {f"line {i}": 1 for i in range(LINES)}
    assert {k: v for k, v in lines.items() if k.startswith("line ")} == expected, (attempt.phase_id, lines)


def test_apiserver_stopped_30s_mid_drain(drainer: Drainer, control: Control):
    phases = 12
    drainer.import_rows([{"run_id": "outage", "phase_id": f"p{i:02d}", "command": counting_phase(10)}
                         for i in range(phases)])
    # After an outage the node is NotReady until its lease is renewed and the control
    # plane's informers resync (about a minute here): new pods wait that long to schedule.
    proc = drainer.start_drain("--parallelism", "4", *AFTER_OUTAGE)
    try:
        wait_for(lambda: running_pods(drainer) >= 2, "two running pods")
        control("stop", "kube-apiserver")
        stopped = time.monotonic()
        time.sleep(30)
        control("start", "kube-apiserver")
        wait_for(lambda: apiserver_ready(drainer.cluster), "the apiserver back", timeout=120)
        print(f"apiserver down for {time.monotonic() - stopped:.0f}s")
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    attempts = assert_clean_outcome(drainer, (proc.returncode, err), phases)
    assert proc.returncode == 0, err
    # a 30s outage is inside the retry budget: nothing failed, nothing ran twice
    assert Counter(a.failure_class for a in attempts) == {"succeeded": phases}, [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    for a in attempts:
        assert_lines_exactly_once(a)


def test_watch_connections_cut_by_apiserver_restarts(drainer: Drainer, control: Control):
    phases = 6
    drainer.import_rows([{"run_id": "cuts", "phase_id": f"p{i}", "command": counting_phase(20)}
                         for i in range(phases)])
    proc = drainer.start_drain("--parallelism", "3", *AFTER_OUTAGE)
    try:
        wait_for(lambda: running_pods(drainer) >= 3, "three running pods")
        for _ in range(2):  # every watch and log stream is cut twice, mid-line if unlucky
            time.sleep(4)
            control("restart", "kube-apiserver")
            wait_for(lambda: apiserver_ready(drainer.cluster), "the apiserver back", timeout=120)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    attempts = assert_clean_outcome(drainer, (proc.returncode, err), phases)
    assert proc.returncode == 0, err
    assert Counter(a.failure_class for a in attempts) == {"succeeded": phases}, [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    for a in attempts:
        assert_lines_exactly_once(a)


def test_api_lost_past_the_retry_budget_is_api_error_and_the_next_session_adopts(
        drainer: Drainer, control: Control):
    phases = 6
    drainer.import_rows([{"run_id": "lost", "phase_id": f"p{i}", "command": counting_phase(30)}
                         for i in range(phases)])
    budget = ("--retry-max-seconds", "3", "--retry-attempts", "3", "--lease-seconds", "5")
    proc = drainer.start_drain("--parallelism", "3", *budget, *AFTER_OUTAGE)
    try:
        wait_for(lambda: running_pods(drainer) >= 3, "three running pods")
        control("stop", "kube-apiserver")
        _, err = proc.communicate(timeout=120)  # the session gives up on its own
    finally:
        proc.kill()
        control("start", "kube-apiserver")
    wait_for(lambda: apiserver_ready(drainer.cluster), "the apiserver back", timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode == 1 and "error: lost the Kubernetes API" in err and "stopped early" in err, err
    first = attempts_of(drainer)
    assert len(first) == 3, first  # nothing new was started once the API was lost
    for a in first:
        assert a.failure_class == "api_error" and "lost the Kubernetes API" in a.message, a
        # the pods may still run: the attempts stay open, not free for a second attempt
        assert a.status == "running" and a.exit_code is None and a.exit_code_reason, a

    time.sleep(6)  # the halted session's lease (5s) expires
    done = drainer.drain("--parallelism", "3", "--lease-seconds", "5", *AFTER_OUTAGE)
    attempts = assert_clean_outcome(drainer, done, phases)
    assert done.returncode == 0, done.stderr
    assert len(attempts) == phases  # adopted, not run again
    assert Counter(a.failure_class for a in attempts) == {"succeeded": phases}, [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    adopted = [a for a in attempts if a.session_id == first[0].session_id]
    assert len(adopted) == 3
    for a in attempts:
        assert_lines_exactly_once(a)


def test_node_deleted_under_a_running_pod_is_node_lost(drainer: Drainer, control: Control):
    nodes = drainer.cluster.core.list_node().items
    assert len(nodes) == 1, "this scenario deletes the node the phase runs on; it expects one node"
    drainer.import_rows([{"run_id": "node", "phase_id": "on-a-lost-node", "command": counting_phase(240, lines=240)}])
    proc = drainer.start_drain(*AFTER_OUTAGE)
    try:
        wait_for(lambda: running_pods(drainer) == 1, "the phase's pod running")
        time.sleep(3)
        # What a cloud's node controller does when a VM vanishes: the Node object goes, the
        # pod garbage collector marks the pods DisruptionTarget/DeletionByPodGC and removes them.
        drainer.cluster.core.delete_node(nodes[0].metadata.name)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        control("restart", "kubelet")  # registers the node again
    wait_for(lambda: _node_ready(drainer), "the node registered and Ready again", timeout=180)
    (attempt,) = assert_clean_outcome(drainer, (proc.returncode, err), 1)
    assert attempt.failure_class == "node_lost", attempt
    assert attempt.message.startswith("node lost:"), attempt.message
    stdout = next(p for p in attempt.logs if p.stream in ("stdout", "combined"))
    assert b"line 0\n" in payload(stdout.url)  # what was printed before the node went is kept


def _node_ready(drainer: Drainer) -> bool:
    for node in drainer.cluster.core.list_node().items:
        for cond in node.status.conditions or []:
            if cond.type == "Ready" and cond.status == "True":
                return True
    return False
