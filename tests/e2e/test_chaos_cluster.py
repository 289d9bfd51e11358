"""Crash safety on the real cluster (issue 6.2): three controllers on one Postgres, each
running the Kubernetes executor, SIGKILLed at random and restarted by the harness.

CI runs a smaller drain than the issue's 200 phases / 20 kills to keep the suite under
its budget; the full size is the same harness by hand (README, "Chaos"):

    python -m tests.chaos.chaos --database-url postgresql://... --phases 200 --kills 20 \\
        -- --executor kubernetes --namespace NS --default-image batchdrain:dev ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.chaos import assert_nothing_lost, run_chaos
from tests.e2e.conftest import IMAGE, Drainer, wait_for
from tests.pgserver import start_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


def test_sigkilled_controllers_on_the_cluster_lose_and_duplicate_nothing(drainer: Drainer, postgres: str,
                                                                          tmp_path: Path):
    extra = ["--executor", "kubernetes", "--kubeconfig", drainer.cluster.kubeconfig,
             "--namespace", drainer.namespace, "--default-image", IMAGE, "--image-pull-policy", "IfNotPresent",
             "--scheduling-timeout-seconds", "120", "--start-timeout-seconds", "120"]
    result = run_chaos(database_url=postgres, workdir=tmp_path, phases=60, kills=6, controllers=3,
                       lease_seconds=3.0, extra=extra, deadline_seconds=900, kill_gap=(3.0, 8.0))
    print(result)
    assert_nothing_lost(result, kills=6)
    assert result["adopted_attempts"] >= 1, result  # the kills really hit running Jobs
    selector = "app.kubernetes.io/managed-by=batchdrain"
    wait_for(lambda: not drainer.cluster.batch.list_namespaced_job(drainer.namespace, label_selector=selector).items
             and not drainer.cluster.core.list_namespaced_pod(drainer.namespace, label_selector=selector).items,
             "no Job or pod of any session left", timeout=120)
