"""Drains on a real cluster: records, logs, classes, cleanup, crash adoption (issues 3 and 4)."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

from batchdrain.db import AttemptRecord, Database
from batchdrain.domain import LogPointer
from batchdrain.jobspec import label_value
from tests.e2e.conftest import Drainer, wait_for


def py(code: str) -> list[str]:
    return ["python3", "-c", code]


def all_attempts(drainer: Drainer) -> list[AttemptRecord]:
    db = Database(drainer.db_url)
    try:
        return db.attempts()
    finally:
        db.dispose()


def payload(pointer: LogPointer) -> bytes:
    """The phase's own bytes: the log minus the controller's identity header."""
    data = Path(pointer.url).read_bytes()
    marker = b"[batchdrain] ================================\n"
    assert data.startswith(b"[batchdrain] ===== ENVIRONMENT IDENTITY =====\n"), data[:200]
    return data[data.index(marker) + len(marker):]


def test_mixed_drain_20_phases_parallelism_5(drainer: Drainer):
    rows = []
    for i in range(20):
        code = 3 if i % 4 == 3 else 0
        rows.append({"run_id": "mixed", "phase_id": f"phase-{i:02d}", "command": py(
            "import os, sys, time; "
            f"print('out-marker {i}', os.environ['BATCHDRAIN_PHASE_ID'], os.environ['BATCHDRAIN_ATTEMPT']); "
            f"print('err-marker {i}', file=sys.stderr); time.sleep(1); "
            + (f"print('RuntimeError: phase {i} failed', file=sys.stderr); " if code else "")
            + f"sys.exit({code})")})
    drainer.import_rows(rows)
    done = drainer.drain("--parallelism", "5")
    assert done.returncode == 0, done.stderr
    attempts = all_attempts(drainer)
    assert len(attempts) == 20
    session_id = attempts[0].session_id
    for attempt in attempts:
        i = int(attempt.phase_id.split("-")[1])
        expected = 3 if i % 4 == 3 else 0
        assert attempt.exit_code == expected, attempt
        assert attempt.failure_class == ("exit_code" if expected else "succeeded")
        assert attempt.container_seconds is not None and attempt.container_seconds >= 0.9
        assert attempt.total_seconds is not None and attempt.total_seconds >= attempt.container_seconds
        assert attempt.job_name and attempt.pod_names and attempt.node and attempt.pod_uid
        assert attempt.image_digest and "sha256:" in attempt.image_digest, attempt.image_digest
        assert attempt.log_mode == "split"
        logs = {p.stream: p for p in attempt.logs}
        assert set(logs) == {"stdout", "stderr"}
        header = Path(logs["stdout"].url).read_text("utf-8", errors="replace")
        assert f"[batchdrain] session: {session_id}" in header
        assert attempt.image_digest in header and f"[batchdrain] pod: {attempt.pod_names[-1]}" in header
        assert f"out-marker {i} {attempt.phase_id} 1".encode() in payload(logs["stdout"])
        assert b"out-marker" not in payload(logs["stderr"])
        assert f"err-marker {i}".encode() in payload(logs["stderr"])
        if expected:
            assert attempt.first_error_line == f"RuntimeError: phase {i} failed"
            # once, though the termination message (the log's tail) says it too
            assert attempt.message.count(f"RuntimeError: phase {i} failed") == 1, attempt.message
    assert drainer.session_objects(session_id) == []
    # each Job's story is in its Events (kept after the Job is deleted)
    job = attempts[0].job_name
    events = drainer.cluster.core.list_namespaced_event(
        drainer.namespace, field_selector=f"involvedObject.name={job}").items
    ours = [e.reason for e in events if e.source and e.source.component == "batchdrain"]
    assert "AttemptStarted" in ours and "Classified" in ours, ours
    report = json.loads(drainer.run("report", session_id, "--format", "json",
                                    "--database-url", drainer.db_url).stdout)
    assert report["leaks"] == [] and report["identity_mismatches"] == []
    assert report["instant_completes"] == []
    assert report["runs"]["mixed"]["after"] == {"queued": 0, "executing": 0, "complete": 15, "failed": 5,
                                                "skipped": 0}


def _pod_of(drainer: Drainer, phase_id: str) -> client.V1Pod | None:
    pods = drainer.cluster.core.list_namespaced_pod(
        drainer.namespace, label_selector=f"batchdrain.io/phase={label_value(phase_id)}").items
    running = [p for p in pods if p.status.phase == "Running"]
    return running[0] if running else None


def _disrupt(drainer: Drainer, errors: list[BaseException], graces: list[int]) -> None:
    """While the drain runs: delete one phase's pod, evict another's (Eviction API)."""
    try:
        pod = wait_for(lambda: _pod_of(drainer, "deleted-mid-run"), "pod of deleted-mid-run", timeout=180)
        graces.append(pod.spec.termination_grace_period_seconds)
        drainer.cluster.core.delete_namespaced_pod(pod.metadata.name, drainer.namespace)
        pod = wait_for(lambda: _pod_of(drainer, "evicted-mid-run"), "pod of evicted-mid-run", timeout=180)
        drainer.cluster.core.create_namespaced_pod_eviction(
            pod.metadata.name, drainer.namespace,
            client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name,
                                                           namespace=drainer.namespace)))
    except (ApiException, AssertionError) as err:
        errors.append(err)


def test_every_failure_class_a_cluster_produces(drainer: Drainer):
    slow = py("import time; print('ready', flush=True); time.sleep(90)")
    drainer.import_rows([
        {"run_id": "classes", "phase_id": "exit-code", "command": py("import sys; sys.exit(7)")},
        {"run_id": "classes", "phase_id": "oom", "memory": "48Mi",
         "command": py("import time; print('allocating', flush=True); time.sleep(1); "
                       "blocks = [bytearray(64 * 1024 * 1024) for _ in range(16)]; time.sleep(5)")},
        {"run_id": "classes", "phase_id": "deadline", "timeout": 6,
         "command": py("import time; print('sleeping', flush=True); time.sleep(120)")},
        {"run_id": "classes", "phase_id": "image-pull", "image": "batchdrain-no-such-image:never",
         "image_pull_policy": "Never", "command": ["true"]},
        {"run_id": "classes", "phase_id": "unschedulable", "node_selector": {"batchdrain.io/nowhere": "true"},
         "command": ["true"]},
        {"run_id": "classes", "phase_id": "missing-binary", "command": ["/no/such/binary", "--flag"]},
        {"run_id": "classes", "phase_id": "deleted-mid-run", "command": slow},
        {"run_id": "classes", "phase_id": "evicted-mid-run", "command": slow},
    ])
    errors: list[BaseException] = []
    graces: list[int] = []
    disruptor = threading.Thread(target=_disrupt, args=(drainer, errors, graces), daemon=True)
    disruptor.start()
    # The phases run as PID 1 without a SIGTERM handler: a deadline or a deletion waits the
    # whole grace before SIGKILL (Kubernetes' default 30 s).
    done = drainer.drain("--parallelism", "8", "--phase-termination-grace-seconds", "1")
    disruptor.join(timeout=10)
    assert not errors, errors
    assert done.returncode == 0, done.stderr
    assert graces == [1], graces
    by_phase = {a.phase_id: a for a in all_attempts(drainer)}
    classes = {pid: a.failure_class for pid, a in by_phase.items()}
    assert classes == {
        "exit-code": "exit_code", "oom": "oom_killed", "deadline": "deadline_exceeded",
        "image-pull": "image_pull", "unschedulable": "unschedulable", "missing-binary": "launch_error",
        "deleted-mid-run": "pod_deleted", "evicted-mid-run": "evicted",
    }, {pid: (a.failure_class, a.message) for pid, a in by_phase.items()}
    assert by_phase["exit-code"].exit_code == 7
    assert by_phase["oom"].exit_code == 137
    # runc could not exec the command: the kubelet says StartError, exit code 128 (made up)
    missing = by_phase["missing-binary"]
    assert missing.exit_code is None and "StartError" in missing.exit_code_reason, missing
    assert missing.container_seconds is None, missing  # its startedAt is the epoch: it never started
    assert missing.message.startswith("the container never started: ") and "/no/such/binary" in missing.message
    container = missing.raw_status["pod"]["containerStatuses"][0]
    assert container["state"]["terminated"]["reason"] == "StartError", container
    for attempt in by_phase.values():
        assert attempt.message and "unknown error" not in attempt.message.lower()
        assert attempt.exit_code is not None or attempt.exit_code_reason, attempt
        assert attempt.logs, attempt
    for pid in ("deleted-mid-run", "evicted-mid-run", "deadline"):
        stdout = next(p for p in by_phase[pid].logs if p.stream in ("stdout", "combined"))
        assert b"ready" in payload(stdout) or b"sleeping" in payload(stdout), pid
    # The kubelet's own error text (a log read after the container or its file was gone)
    # is never stored as a phase's output; before, it was appended to stdout.
    for attempt in by_phase.values():
        for pointer in attempt.logs:
            stored = payload(pointer)
            assert b"unable to retrieve container logs" not in stored, (attempt.phase_id, stored[-300:])
            assert b"failed to try resolving symlinks" not in stored, (attempt.phase_id, stored[-300:])
    # It ran before its 6 s deadline ("sleeping"), so with a 30 s grace its container would
    # have lived past 30 s: a bound on what the grace allows, not a timing.
    deadline = by_phase["deadline"].container_seconds
    assert deadline is not None and deadline < 30, by_phase["deadline"]
    assert drainer.session_objects(by_phase["oom"].session_id) == []

    # config_error: DATABASE_URL from a Secret that does not exist
    drainer.import_rows([{"run_id": "config", "phase_id": "missing-secret", "command": ["true"]}])
    done = drainer.drain("--run-id", "config", "--database-url-secret", "no-such-secret")
    assert done.returncode == 0, done.stderr
    (attempt,) = [a for a in all_attempts(drainer) if a.run_id == "config"]
    assert attempt.failure_class == "config_error", attempt
    assert "no-such-secret" in attempt.message


def test_split_streams_huge_and_binary_logs_byte_exact(drainer: Drainer):
    # 50 MiB in 64 KiB blocks of deterministic, non-UTF-8 bytes with newlines. No byte 13:
    # containerd's CRI logger turns "\r\n" into "\n" before any API client sees it (what
    # the kubelet serves is what we store, byte for byte; a lone \r survives, see stderr).
    blocks = 50 * 16
    code = (
        "import sys, hashlib\n"
        "h = hashlib.sha256()\n"
        f"for i in range({blocks}):\n"
        "    block = (bytes(14 if (i * 7 + j) % 256 == 13 else (i * 7 + j) % 256 for j in range(255))"
        " + b'\\n') * 256\n"
        "    sys.stdout.buffer.write(block); h.update(block)\n"
        "sys.stdout.buffer.flush()\n"
        "sys.stderr.buffer.write(b'\\xc3\\x28 not utf-8 \\xff\\xfe \\r lone CR\\n' + h.hexdigest().encode() + b'\\n')\n"
    )
    drainer.import_rows([{"run_id": "logs", "phase_id": "big", "command": py(code), "timeout": 600}])
    done = drainer.drain()
    assert done.returncode == 0, done.stderr
    (attempt,) = all_attempts(drainer)
    assert attempt.failure_class == "succeeded", attempt
    assert attempt.log_mode == "split"
    logs = {p.stream: p for p in attempt.logs}
    err = payload(logs["stderr"])
    assert err.startswith(b"\xc3\x28 not utf-8 \xff\xfe \r lone CR\n")
    expected_sha = err.split(b"\n")[1].decode()
    out = payload(logs["stdout"])
    assert len(out) == blocks * 65536
    assert hashlib.sha256(out).hexdigest() == expected_sha
    assert logs["stdout"].size_bytes == Path(logs["stdout"].url).stat().st_size


def test_controller_sigkill_then_restart_adopts_jobs(drainer: Drainer):
    drainer.import_rows([
        {"run_id": "crash", "phase_id": f"p{i}",
         "command": py("import os, time; print('start', os.environ['BATCHDRAIN_ATTEMPT'], flush=True); "
                       "time.sleep(15); print('end')")}
        for i in range(6)])
    proc = drainer.start_drain("--parallelism", "3", "--lease-seconds", "5")
    try:
        wait_for(lambda: len(drainer.cluster.batch.list_namespaced_job(
            drainer.namespace, label_selector="app.kubernetes.io/managed-by=batchdrain").items) >= 3,
            "three Jobs of the first controller")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    first = all_attempts(drainer)
    killed_session = first[0].session_id
    assert [a.status for a in first] == ["running"] * len(first)
    time.sleep(6)  # the dead session's lease (5s) expires
    done = drainer.drain("--parallelism", "3", "--lease-seconds", "5")
    assert done.returncode == 0, done.stderr
    attempts = all_attempts(drainer)
    assert all(a.status == "finished" for a in attempts)
    per_phase: dict[str, list[AttemptRecord]] = {}
    for a in attempts:
        per_phase.setdefault(a.phase_id, []).append(a)
    # adopted, not re-run: one attempt per phase, and the adopted ones finished normally
    assert {pid: len(v) for pid, v in per_phase.items()} == {f"p{i}": 1 for i in range(6)}
    assert all(a.failure_class == "succeeded" for a in attempts), [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    adopted = [a for a in attempts if a.session_id == killed_session]
    assert len(adopted) == len(first) >= 3
    for a in adopted:
        stdout = next(p for p in a.logs if p.stream in ("stdout", "combined"))
        assert b"start 1" in payload(stdout) and b"end" in payload(stdout)
    wait_for(lambda: drainer.session_objects(killed_session) == [], "the adopted Jobs' pods to go", timeout=60)
    assert drainer.session_objects(attempts[-1].session_id) == []


def test_sigterm_leaves_the_job_for_the_next_session_to_adopt(drainer: Drainer):
    drainer.import_rows([{"run_id": "term", "phase_id": "long", "command": py(
        "import time; print('start', flush=True); time.sleep(25); print('end')")}])
    proc = drainer.start_drain("--term-grace-seconds", "2", "--lease-seconds", "5")
    try:
        wait_for(lambda: any(p.status.phase == "Running" for p in drainer.cluster.core.list_namespaced_pod(
            drainer.namespace, label_selector="app.kubernetes.io/managed-by=batchdrain").items), "the phase's pod")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # the Job is left in place on purpose (no leak, so exit 0), the attempt stays open
    assert proc.returncode == 0 and "interrupted: 1 attempt(s) left running" in err and "leak audit" not in err, err
    (interrupted,) = all_attempts(drainer)
    assert interrupted.status == "running" and interrupted.failure_class == "controller_interrupted"
    assert drainer.session_objects(interrupted.session_id), "the Job should still be there"
    time.sleep(6)  # the interrupted session's lease (5s) expires
    done = drainer.drain("--lease-seconds", "5")
    assert done.returncode == 0, done.stderr
    (adopted,) = all_attempts(drainer)  # adopted, not re-run
    assert adopted.status == "finished" and adopted.failure_class == "succeeded", adopted
    assert adopted.raw_status and "interrupted_at" in adopted.raw_status
    stdout = next(p for p in adopted.logs if p.stream in ("stdout", "combined"))
    assert payload(stdout).count(b"start") == 1 and b"end" in payload(stdout)
    # the adopting session deleted the Job; its pod goes with the garbage collector
    wait_for(lambda: drainer.session_objects(adopted.session_id) == [], "the adopted Job's pod to go",
             timeout=60)


def _refused_attempt(drainer: Drainer, phase: dict) -> AttemptRecord:
    """Drain one phase whose pod the namespace's admission refuses; its attempt."""
    # The Job's deadline (150 s) ends the drain should the refusal go unseen (deadline_exceeded);
    # the scheduling timeout is far above the bound asserted: only the Job's Events can beat it.
    drainer.import_rows([{"run_id": "admission", "phase_id": "refused", "command": ["true"],
                          "timeout": 150, **phase}])
    done = drainer.drain("--scheduling-timeout-seconds", "300")
    assert done.returncode == 0, done.stderr
    (attempt,) = all_attempts(drainer)
    assert drainer.session_objects(attempt.session_id) == []
    return attempt


def _assert_refused(attempt: AttemptRecord, text: str) -> None:
    summary = (attempt.failure_class, attempt.message, attempt.total_seconds)
    assert attempt.failure_class == "admission_refused", summary
    assert text in attempt.message and "\n" not in attempt.message, summary
    # classified from the Job's FailedCreate Events, well before any timeout (a bound, not a timing)
    assert attempt.total_seconds < 100, summary
    assert attempt.exit_code is None and attempt.exit_code_reason, attempt
    assert attempt.raw_status is not None
    events = attempt.raw_status["events"]
    assert any(e["reason"] == "FailedCreate" and text in e["message"] for e in events), attempt.raw_status
    assert attempt.logs, attempt


def test_pod_refused_by_a_resource_quota_is_classified_at_once(fenced_drainer: Drainer):
    fenced_drainer.cluster.core.create_namespaced_resource_quota(fenced_drainer.namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="bd-no-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})))
    attempt = _refused_attempt(fenced_drainer, {})
    _assert_refused(attempt, "exceeded quota: bd-no-pods")


def test_pod_refused_by_a_limit_range_is_classified_at_once(fenced_drainer: Drainer):
    fenced_drainer.cluster.core.create_namespaced_limit_range(fenced_drainer.namespace, client.V1LimitRange(
        metadata=client.V1ObjectMeta(name="bd-small"), spec=client.V1LimitRangeSpec(limits=[
            client.V1LimitRangeItem(type="Container", max={"memory": "32Mi"})])))
    attempt = _refused_attempt(fenced_drainer, {"memory": "64Mi"})
    _assert_refused(attempt, "maximum memory usage per Container is 32Mi")
