"""Kueue on the real cluster: quotas hold, admission waits are recorded, preemption is classified.

Kueue v0.17.0 is built from its Go module and deployed from the module's own chart by
``hack/kueue/up.sh`` for this module only, and removed afterwards (its webhooks sit in
front of every Job of the cluster while it is installed). The queue objects are made
here: a ResourceFlavor, a ClusterQueue whose CPU quota is smaller than the session's
parallelism, a LocalQueue in the test's namespace, two WorkloadPriorityClasses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from batchdrain.db import Database
from batchdrain.domain import FailureClass
from tests.e2e.conftest import Cluster, Drainer, make_namespace, wait_for

HACK = Path(__file__).resolve().parents[2] / "hack" / "kueue"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
CPU = "100m"  # each phase's request; the quota is a multiple of it
QUEUE = "team-a"


def _kueue_script(name: str) -> None:
    done = subprocess.run(["bash", str(HACK / name)], capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, f"hack/kueue/{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def kueue(cluster: Cluster) -> Iterator[client.CustomObjectsApi]:
    _kueue_script("up.sh")
    try:
        yield client.CustomObjectsApi()
    finally:
        _kueue_script("down.sh")


def _create(api: client.CustomObjectsApi, plural: str, body: dict[str, Any], namespace: str | None = None) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
    if namespace is None:
        api.create_cluster_custom_object(GROUP, VERSION, plural, body)
    else:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


@pytest.fixture
def queue(kueue: client.CustomObjectsApi, cluster: Cluster, request: pytest.FixtureRequest,
          tmp_path: Path) -> Iterator[tuple[Drainer, int]]:
    """A namespace with LocalQueue ``team-a`` on a ClusterQueue of ``quota`` phases' CPU."""
    slots = int(request.param)
    stem = request.node.name.removeprefix("test_")[:12]
    namespace = make_namespace(cluster, f"kueue-{stem}")
    suffix = namespace.rsplit("-", 1)[-1]
    flavor, cq = f"bd-flavor-{suffix}", f"bd-cq-{suffix}"
    _create(kueue, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": flavor}})
    _create(kueue, "clusterqueues", {"kind": "ClusterQueue", "metadata": {"name": cq}, "spec": {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "preemption": {"withinClusterQueue": "LowerPriority"},
        "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": flavor, "resources": [
            {"name": "cpu", "nominalQuota": f"{100 * slots}m"}, {"name": "memory", "nominalQuota": "8Gi"}]}]}]}})
    _create(kueue, "localqueues", {"kind": "LocalQueue", "metadata": {"name": QUEUE, "namespace": namespace},
                                   "spec": {"clusterQueue": cq}}, namespace)
    for name, value in ((f"bd-low-{suffix}", 100), (f"bd-high-{suffix}", 1000)):
        _create(kueue, "workloadpriorityclasses", {"kind": "WorkloadPriorityClass", "metadata": {"name": name},
                                                   "value": value, "description": "batchdrain e2e"})
    try:
        yield Drainer(cluster, namespace, tmp_path), slots
    finally:
        cluster.core.delete_namespace(namespace, propagation_policy="Background")
        for plural, name in (("workloadpriorityclasses", f"bd-low-{suffix}"),
                             ("workloadpriorityclasses", f"bd-high-{suffix}"), ("clusterqueues", cq),
                             ("resourceflavors", flavor)):
            _delete_when_free(kueue, plural, name)


def _delete_when_free(api: client.CustomObjectsApi, plural: str, name: str) -> None:
    # A ClusterQueue (and its flavor) is held by a finalizer while workloads use it:
    # deleted in the background, gone once the namespace's workloads are.
    try:
        api.delete_cluster_custom_object(GROUP, VERSION, plural, name)
    except client.ApiException as err:
        if err.status != 404:
            raise


class AdmittedJobs:
    """Polls the API for Jobs Kueue has admitted and not finished: the most seen at once."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._cluster, self._namespace = cluster, namespace
        self.most = 0
        self.seen_suspended = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> AdmittedJobs:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            jobs = self._cluster.batch.list_namespaced_job(self._namespace).items
            running = [j for j in jobs if not j.spec.suspend and not _ended(j)]
            self.most = max(self.most, len(running))
            self.seen_suspended = max(self.seen_suspended, sum(bool(j.spec.suspend) for j in jobs))


def _ended(job: Any) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


def _attempts(drainer: Drainer) -> dict[str, list[Any]]:
    db = Database(drainer.db_url)
    try:
        by_phase: dict[str, list[Any]] = {}
        for attempt in db.attempts():
            by_phase.setdefault(attempt.phase_id, []).append(attempt)
        return {k: sorted(v, key=lambda a: a.attempt) for k, v in by_phase.items()}
    finally:
        db.dispose()


QUEUED = ("--queue-name", QUEUE, "--cpu-request", CPU, "--memory-limit", "64Mi",
          "--phase-termination-grace-seconds", "2")


@pytest.mark.parametrize("queue", [2], indirect=True)
def test_a_drain_wider_than_the_quota_runs_within_it_and_records_the_waits(queue: tuple[Drainer, int]) -> None:
    drainer, slots = queue
    drainer.import_rows([{"run_id": "wide", "phase_id": f"p{i}", "command": ["sh", "-c", f"sleep 3; echo p{i}"]}
                         for i in range(6)])
    doctor = _doctor(drainer, QUEUE)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"{GROUP}/{VERSION}: LocalQueue {QUEUE} in namespace {drainer.namespace}" in doctor.stdout, doctor.stdout
    missing = _doctor(drainer, "no-such-queue")
    assert missing.returncode != 0
    assert f"no LocalQueue 'no-such-queue' in namespace {drainer.namespace}" in missing.stdout + missing.stderr
    with AdmittedJobs(drainer.cluster, drainer.namespace) as seen:
        done = drainer.drain(*QUEUED, "--parallelism", "6")
    assert done.returncode == 0, done.stderr
    assert 1 <= seen.most <= slots, seen.most  # never more admitted than the quota allows
    assert seen.seen_suspended >= 6 - slots  # the rest waited in the queue, suspended
    attempts = _attempts(drainer)
    assert sorted(attempts) == [f"p{i}" for i in range(6)]
    waits = []
    for (attempt,) in attempts.values():
        assert attempt.failure_class is FailureClass.SUCCEEDED, attempt.message
        assert attempt.admitted_at is not None and attempt.started_at is not None
        assert attempt.created_at <= attempt.admitted_at
        waits.append((attempt.admitted_at - attempt.created_at).total_seconds())
    assert max(waits) >= 3.0, waits  # the last pair waited for two pairs of 3 s phases
    session_id = attempts["p0"][0].session_id
    report = json.loads(drainer.run("report", session_id, "--format", "json", "--database-url",
                                    drainer.db_url).stdout)
    assert report["durations"]["queue_wait_seconds"]["count"] == 6
    assert report["durations"]["queue_wait_seconds"]["max"] >= 3.0
    assert drainer.session_objects(session_id) == []


def _doctor(drainer: Drainer, queue: str) -> subprocess.CompletedProcess[str]:
    """``batchdrain doctor --queue-name``, its table wide enough to keep each check on one line."""
    args = [a for a in drainer.args("--queue-name", queue) if a != "--quiet"]  # a drain flag, not a setting
    return subprocess.run([sys.executable, "-m", "batchdrain.cli", "doctor", *args], cwd=drainer.workdir,
                          env={**drainer.env(), "COLUMNS": "400"}, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("queue", [1], indirect=True)
def test_a_high_priority_phase_preempts_a_low_one_which_is_classified_and_retried(
    queue: tuple[Drainer, int],
) -> None:
    drainer, _ = queue
    suffix = drainer.namespace.rsplit("-", 1)[-1]
    drainer.import_rows([{"run_id": "r", "phase_id": "low", "workload_priority_class": f"bd-low-{suffix}",
                          "command": ["sh", "-c", "echo low-start; sleep 45; echo low-end"]}])
    low = drainer.start_drain(*QUEUED)
    wait_for(lambda: _running_with_log(drainer, "low-start"), "the low-priority phase admitted and running",
             timeout=180)
    drainer.import_rows([{"run_id": "r", "phase_id": "high", "workload_priority_class": f"bd-high-{suffix}",
                          "command": ["sh", "-c", "echo high"]}])
    high = drainer.drain(*QUEUED, timeout=300)
    assert high.returncode == 0, high.stderr
    _, low_err = low.communicate(timeout=300)
    assert low.returncode == 0, low_err
    again = drainer.drain(*QUEUED, timeout=300)  # the preempted phase, retried (not charged)
    assert again.returncode == 0, again.stderr
    attempts = _attempts(drainer)
    (high_attempt,) = attempts["high"]
    assert high_attempt.failure_class is FailureClass.SUCCEEDED and high_attempt.admitted_at is not None
    first, second = attempts["low"]
    assert first.failure_class is FailureClass.PREEMPTED, first.message
    assert "Preempted to accommodate a workload" in (first.message or ""), first.message
    # Kueue requeues a preempted workload and admits its Job again when quota frees: the
    # Job must be gone by then, or a second pod runs the phase unrecorded (seen here once).
    assert len(first.pod_names) == 1, first.pod_names
    assert first.container_seconds is not None and first.container_seconds < 40, first.container_seconds
    assert second.failure_class is FailureClass.SUCCEEDED, second.message
    db = Database(drainer.db_url)
    try:
        phase = {p.phase_id: p for p in db.phases()}["low"]
        assert phase.state == "COMPLETE" and phase.retry_base == 1  # the preempted attempt was not charged
    finally:
        db.dispose()


def _running_with_log(drainer: Drainer, text: str) -> bool:
    pods = drainer.cluster.core.list_namespaced_pod(drainer.namespace).items
    for pod in pods:
        if pod.status.phase != "Running":
            continue
        try:
            if text in drainer.cluster.core.read_namespaced_pod_log(pod.metadata.name, drainer.namespace):
                return True
        except client.ApiException:
            continue
    return False
