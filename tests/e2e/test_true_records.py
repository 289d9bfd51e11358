"""Records that are true to what the cluster did (issue: byte-exact logs, orphans, lost namespaces).

Each scenario is one a real workload or a platform team produces, checked on the real
cluster: the attempt's class, exit code, logs and the objects left must be what happened.
"""

from __future__ import annotations

import signal
from pathlib import Path

from kubernetes import client

from batchdrain.db import Database
from batchdrain.jobspec import LABEL_RUN, label_value
from tests.e2e.conftest import Drainer, make_namespace, wait_for
from tests.e2e.test_kubernetes_drain import all_attempts, payload, py

MANAGED = "app.kubernetes.io/managed-by=batchdrain"


def _running_pod(drainer: Drainer, run: str) -> client.V1Pod:
    """The running pod of ``run`` (the module's namespace holds the other tests' pods too)."""
    selector = f"{MANAGED},{LABEL_RUN}={label_value(run)}"

    def running() -> client.V1Pod | None:
        pods = drainer.cluster.core.list_namespaced_pod(drainer.namespace, label_selector=selector).items
        return next((p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp), None)

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
        pod = _running_pod(drainer, "orphan")
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


def _jobs(drainer: Drainer) -> list[client.V1Job]:
    items: list[client.V1Job] = drainer.cluster.batch.list_namespaced_job(
        drainer.namespace, label_selector=MANAGED).items
    return items


def test_a_controller_restarted_at_once_after_a_crash_adopts_without_waiting_for_the_lease(drainer: Drainer):
    """Before: restarted within the dead session's lease, drain exited 0 in under a second
    with "0 attempt(s)" and no word of the held phases, while their Jobs ran unwatched."""
    drainer.import_rows([{"run_id": "restart", "phase_id": f"p{i}", "command": py(
        "import time; print('start', flush=True); time.sleep(8); print('end')")} for i in range(2)])
    proc = drainer.start_drain("--parallelism", "2", "--lease-seconds", "900")
    try:
        wait_for(lambda: len(_jobs(drainer)) == 2, "both Jobs of the first controller")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    killed = all_attempts(drainer)[0].session_id
    # at once, well within the 900 s lease: its holder (this host, that pid) is gone
    done = drainer.drain("--parallelism", "2", "--lease-seconds", "900", timeout=400)
    assert done.returncode == 0, done.stderr
    attempts = all_attempts(drainer)
    assert len(attempts) == 2, attempts
    adopter = next(a.adopted_by for a in attempts)
    assert all(a.status == "finished" and a.failure_class == "succeeded" for a in attempts), attempts
    assert all(a.session_id == killed and a.adopted_by == adopter for a in attempts), attempts
    assert "2 attempt(s)" in done.stdout, done.stdout  # the adopting session counts what it finished
    for attempt in attempts:
        out = next(p for p in attempt.logs if p.stream in ("stdout", "combined"))
        assert payload(out) == b"start\nend\n"


def test_sigterm_leaves_jobs_that_are_no_leaks_and_the_report_says_where_they_went(drainer: Drainer):
    """Before: exit 1 with "leak audit: N object(s)" for the Jobs left on purpose; the
    adopting session's report said "0 attempt(s)"; the interrupted one's still "running"."""
    drainer.import_rows([{"run_id": "term", "phase_id": "long", "command": py(
        "import time; print('start', flush=True); time.sleep(12); print('end')")}])
    proc = drainer.start_drain("--term-grace-seconds", "1", "--lease-seconds", "900")
    try:
        _running_pod(drainer, "term")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err  # asked to stop, nothing leaked
    assert "interrupted: 1 attempt(s) left running for the next session to adopt" in err, err
    assert "leak audit" not in err, err
    (interrupted,) = all_attempts(drainer)
    done = drainer.drain("--lease-seconds", "900", timeout=300)  # at once: the holder exited
    assert done.returncode == 0, done.stderr
    assert "1 attempt(s)" in done.stdout and "1 succeeded" in done.stdout, done.stdout
    (adopted,) = all_attempts(drainer)
    assert adopted.failure_class == "succeeded" and adopted.adopted_by, adopted
    shown = drainer.run("report", interrupted.session_id, "--database-url", drainer.db_url)
    assert shown.returncode == 0, shown.stderr
    assert f"term/long #1: adopted by {adopted.adopted_by}, succeeded" in shown.stdout, shown.stdout


def test_a_namespace_deleted_mid_drain_halts_the_session_and_charges_nothing(cluster, tmp_path):
    """Before: finished phases were recorded pod_deleted, the namespace never mentioned,
    every remaining phase claimed and charged launch_error within a second, exit 0."""
    namespace = make_namespace(cluster, "gone")
    drainer = Drainer(cluster, namespace, tmp_path)
    drainer.import_rows(
        [{"run_id": "ns", "phase_id": "quick", "command": ["true"]}]
        + [{"run_id": "ns", "phase_id": f"slow-{i}", "command": py(
            "import time; print('working', flush=True); time.sleep(60)")} for i in range(2)]
        + [{"run_id": "ns", "phase_id": f"later-{i}", "command": ["true"]} for i in range(6)])
    proc = drainer.start_drain("--parallelism", "3")
    try:
        wait_for(lambda: len([p for p in drainer.cluster.core.list_namespaced_pod(namespace, label_selector=MANAGED)
                              .items if p.status.phase == "Running"]) >= 2, "two slow phases running", timeout=180)
        cluster.core.delete_namespace(namespace)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert f"namespace {namespace}" in err and "deleted mid-drain" in err, err
    attempts = {a.phase_id: a for a in all_attempts(drainer)}
    assert attempts["quick"].failure_class == "succeeded", attempts["quick"]
    for attempt in attempts.values():
        assert attempt.failure_class != "launch_error", attempt
    phases = {p.phase_id: p for p in Database(drainer.db_url).phases()}
    # nothing the namespace's deletion did is charged: every unfinished phase may run again in full
    unfinished = [p for p in phases.values() if p.state.value != "COMPLETE"]
    assert {"slow-0", "slow-1"} <= {p.phase_id for p in unfinished}, phases
    for phase in unfinished:
        assert phase.attempts - phase.retry_base == 0, phase
        assert phase.state.value == "QUEUED", phase


def test_an_id_with_a_newline_cannot_forge_an_identity_header_line(drainer: Drainer):
    """Before: ids were written raw, so a newline in an id (another application may insert
    rows directly) wrote a header line of its own, here a second DATABASE_URL."""
    run_id = "forged\n[batchdrain] DATABASE_URL: postgresql://attacker@evil/db"
    drainer.import_rows([{"run_id": run_id, "phase_id": "p", "command": ["true"]}])
    done = drainer.drain()
    assert done.returncode == 0, done.stderr
    attempt = next(a for a in all_attempts(drainer) if a.run_id == run_id)
    assert attempt.failure_class == "succeeded", attempt
    for pointer in attempt.logs:
        head = Path(pointer.url).read_bytes().split(b"[batchdrain] ================================\n")[0]
        lines = head.decode().splitlines()
        assert sum(line.startswith("[batchdrain] DATABASE_URL: ") for line in lines) == 1, lines
        assert "[batchdrain] run: forged\\n[batchdrain] DATABASE_URL: postgresql://attacker@evil/db" in lines
    report = Database(drainer.db_url).session(attempt.session_id).report
    assert report is not None and report["identity_mismatches"] == [], report["identity_mismatches"]
