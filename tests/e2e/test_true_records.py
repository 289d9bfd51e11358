"""Records that are true to what the cluster did (issue: byte-exact logs, orphans, lost namespaces).

Each scenario is one a real workload or a platform team produces, checked on the real
cluster: the attempt's class, exit code, logs and the objects left must be what happened.
"""

from __future__ import annotations

from kubernetes import client

from tests.e2e.conftest import Drainer, wait_for
from tests.e2e.test_kubernetes_drain import all_attempts, payload, py

MANAGED = "app.kubernetes.io/managed-by=batchdrain"


def _running_pod(drainer: Drainer) -> client.V1Pod:
    def running() -> client.V1Pod | None:
        pods = drainer.cluster.core.list_namespaced_pod(drainer.namespace, label_selector=MANAGED).items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod: client.V1Pod = wait_for(running, "the phase's pod running")
    return pod


def test_a_job_deleted_with_cascade_orphan_keeps_its_pod_followed_to_the_end(drainer: Drainer):
    """Before: the attempt closed as pod_deleted, a third of the log lost, the pod leaked
    (no owner, finalizer removed) and the phase was FAILED while that pod still ran."""
    drainer.import_rows([{"run_id": "orphan", "phase_id": "p", "command": py(
        "import time\n"
        "for i in range(24):\n"
        "    print('line', i, flush=True); time.sleep(0.5)\n")}])
    proc = drainer.start_drain("--lease-seconds", "10")
    try:
        pod = _running_pod(drainer)
        job = pod.metadata.owner_references[0].name
        wait_for(lambda: b"line 2" in drainer.cluster.core.read_namespaced_pod_log(
            pod.metadata.name, drainer.namespace, _preload_content=False).data, "output under way")
        drainer.cluster.batch.delete_namespaced_job(job, drainer.namespace, propagation_policy="Orphan")
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (attempt,) = all_attempts(drainer)
    assert attempt.failure_class == "succeeded" and attempt.exit_code == 0, attempt
    assert attempt.pod_uid == pod.metadata.uid
    out = next(p for p in attempt.logs if p.stream in ("stdout", "combined"))
    assert payload(out) == b"".join(f"line {i}\n".encode() for i in range(24))
    # the orphan (no owner: no garbage collector) was deleted by the controller
    wait_for(lambda: not drainer.cluster.core.list_namespaced_pod(drainer.namespace, label_selector=MANAGED).items,
             "the orphaned pod to be deleted", timeout=60)


def test_durations_come_from_a_real_clock_and_are_never_negative_or_epoch(drainer: Drainer):
    """Before: a container that never started (StartError, startedAt 1970-01-01) got
    container_seconds 1.8e9 and poisoned the session's stats; whole seconds gave negatives."""
    drainer.import_rows([
        {"run_id": "clock", "phase_id": "missing-binary", "command": ["/no/such/binary"]},
        {"run_id": "clock", "phase_id": "instant", "command": ["true"]},
        {"run_id": "clock", "phase_id": "sleeps", "command": py("import time; time.sleep(2.5)")},
    ])
    done = drainer.drain("--parallelism", "3")
    assert done.returncode == 0, done.stderr
    by_phase = {a.phase_id: a for a in all_attempts(drainer)}
    never = by_phase["missing-binary"]
    assert never.container_seconds is None, never
    for attempt in by_phase.values():
        seconds = attempt.container_seconds
        assert seconds is None or 0.0 <= seconds < 60.0, attempt
        assert attempt.total_seconds is not None and attempt.total_seconds >= 0.0
    sleeps, instant = by_phase["sleeps"].container_seconds, by_phase["instant"].container_seconds
    assert sleeps is not None and 1.5 <= sleeps < 60.0
    assert instant is not None and instant < 60.0
