"""Crash safety on the real cluster (issue 6.2): three controllers on one Postgres, each
running the Kubernetes executor, SIGKILLed while they run attempts and restarted by the
harness (kills follow the drain's progress, not the clock: see ``tests/chaos/chaos.py``).

CI runs a smaller drain than the issue's 200 phases / 20 kills to keep the suite under
its budget; the full size is the same harness by hand (README, "Chaos"):

    python -m tests.chaos.chaos --database-url postgresql://... --phases 200 --kills 20 \\
        -- --executor kubernetes --namespace NS --default-image batchdrain:dev ...

On failure the assertion lists every Job and pod still present with its labels, the
attempt rows naming it, the odd attempts and every session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos import assert_nothing_lost, describe, run_chaos
from tests.e2e.conftest import IMAGE, Cluster, Drainer
from tests.pgserver import start_postgres

SELECTOR = "app.kubernetes.io/managed-by=batchdrain"
LEAK_WAIT_SECONDS = 120.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


def _labels(meta: Any) -> dict[str, str]:
    return {k.removeprefix("batchdrain.io/"): v for k, v in (meta.labels or {}).items()
            if k.startswith("batchdrain.io/") or k == "job-name"}


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def objects_left(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Every Job and pod of any session still in the namespace, as ``describe`` shows them."""
    found: list[dict[str, Any]] = []
    for job in cluster.batch.list_namespaced_job(namespace, label_selector=SELECTOR).items:
        status = job.status
        conditions = [f"{c.type}={c.status}" for c in (status.conditions or [])] if status else []
        found.append({"kind": "job", "name": job.metadata.name, "labels": _labels(job.metadata),
                      "deletion": _when(job.metadata.deletion_timestamp), "finalizers": job.metadata.finalizers,
                      "created": _when(job.metadata.creation_timestamp),
                      "status": {"active": status.active, "succeeded": status.succeeded, "failed": status.failed,
                                 "conditions": conditions} if status else None})
    for pod in cluster.core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        states = [f"{c.name}: {c.state.to_dict() if c.state else None}"
                  for c in (pod.status.container_statuses or [])] if pod.status else []
        found.append({"kind": "pod", "name": pod.metadata.name, "labels": _labels(pod.metadata),
                      "job": (pod.metadata.labels or {}).get("job-name"),
                      "deletion": _when(pod.metadata.deletion_timestamp), "finalizers": pod.metadata.finalizers,
                      "created": _when(pod.metadata.creation_timestamp),
                      "status": {"phase": pod.status.phase if pod.status else None, "containers": states}})
    return found


def test_sigkilled_controllers_on_the_cluster_lose_and_duplicate_nothing(drainer: Drainer, postgres: str,
                                                                          tmp_path: Path):
    extra = ["--executor", "kubernetes", "--kubeconfig", drainer.cluster.kubeconfig,
             "--namespace", drainer.namespace, "--default-image", IMAGE, "--image-pull-policy", "IfNotPresent",
             "--scheduling-timeout-seconds", "120", "--start-timeout-seconds", "120"]
    result = run_chaos(database_url=postgres, workdir=tmp_path, phases=60, kills=6, controllers=3,
                       lease_seconds=3.0, extra=extra, deadline_seconds=900)
    print(result)

    def explain() -> str:
        return describe(postgres, objects_left(drainer.cluster, drainer.namespace))

    print(explain())  # shown with -s, and by pytest when the test fails
    assert_nothing_lost(result, kills=6, explain=explain)
    assert result["adopted_attempts"] >= 1, f"the kills hit no running Job\n{result}\n{explain()}"
    deadline = time.monotonic() + LEAK_WAIT_SECONDS
    while objects_left(drainer.cluster, drainer.namespace):
        if time.monotonic() >= deadline:
            raise AssertionError(f"Jobs or pods of the chaos sessions still present after {LEAK_WAIT_SECONDS:g}s"
                                 f"\n{result}\n{explain()}")
        time.sleep(1.0)
