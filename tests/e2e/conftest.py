"""E2E harness: a real cluster from ``KUBECONFIG``, nothing else.

The same tests run on the cluster ``make test`` builds from source and on kind
(`kind create cluster && kind load docker-image batchdrain:dev`). Every test module
gets its own namespace; everything is torn down afterwards. A missing cluster is a
failure, never a skip: these tests are the only proof that Kubernetes behaves as the
executor expects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

SRC = str(Path(__file__).resolve().parents[2] / "controller")
IMAGE = os.environ.get("BATCHDRAIN_E2E_IMAGE", "batchdrain:dev")
WAIT = 120.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Cluster:
    kubeconfig: str
    core: client.CoreV1Api
    batch: client.BatchV1Api


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        pytest.fail("e2e tests need a real cluster: set KUBECONFIG (make test brings one up; "
                    "or kind create cluster)", pytrace=False)
    config.load_kube_config(config_file=kubeconfig.split(os.pathsep)[0])
    core = client.CoreV1Api()
    try:
        core.list_node()
    except Exception as err:
        pytest.fail(f"cluster from KUBECONFIG={kubeconfig} unreachable: {err}", pytrace=False)
    return Cluster(kubeconfig.split(os.pathsep)[0], core, client.BatchV1Api())


def make_namespace(cluster: Cluster, stem: str) -> str:
    name = f"bd-e2e-{stem[:20]}-{uuid.uuid4().hex[:6]}".replace("_", "-").lower()
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"batchdrain.io/e2e": "true"})))
    # pods cannot be created before the namespace's default ServiceAccount exists
    wait_for(lambda: _has_default_sa(cluster, name), f"default ServiceAccount in {name}")
    return name


@pytest.fixture(scope="module")
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = make_namespace(cluster, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    yield name
    cluster.core.delete_namespace(name, propagation_policy="Background")


def _has_default_sa(cluster: Cluster, namespace: str) -> bool:
    try:
        cluster.core.read_namespaced_service_account("default", namespace)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


@dataclass
class Drainer:
    """Runs the real controller CLI against the cluster, with its own SQLite and log dir."""

    cluster: Cluster
    namespace: str
    workdir: Path

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'backlog.db'}"

    def args(self, *extra: str) -> list[str]:
        return ["--database-url", self.db_url, "--log-store", str(self.workdir / "logs"),
                "--kubeconfig", self.cluster.kubeconfig, "--namespace", self.namespace,
                "--executor", "kubernetes", "--default-image", IMAGE, "--image-pull-policy", "IfNotPresent",
                "--scheduling-timeout-seconds", "20", "--start-timeout-seconds", "90", "--quiet",
                # Failed phases retried by the next session at once, as these tests expect (no backoff).
                "--retry-delay-seconds", "0", *extra]

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
                "PYTHONPATH": SRC}

    def run(self, command: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        full = [sys.executable, "-m", "batchdrain.cli", command, *args]
        return subprocess.run(full, cwd=self.workdir, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start_drain(self, *extra: str) -> subprocess.Popen[str]:
        full = [sys.executable, "-m", "batchdrain.cli", "drain", *self.args(*extra)]
        return subprocess.Popen(full, cwd=self.workdir, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def drain(self, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run("drain", *self.args(*extra), timeout=timeout)

    def import_rows(self, rows: list[dict[str, Any]]) -> None:
        import yaml

        path = self.workdir / f"backlog-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(rows, allow_unicode=True), encoding="utf-8")
        done = self.run("import", str(path), "--database-url", self.db_url)
        assert done.returncode == 0, done.stderr

    def session_objects(self, session_id: str) -> list[str]:
        from batchdrain.jobspec import session_selector

        selector = session_selector(session_id)
        jobs = self.cluster.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        pods = self.cluster.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [f"job/{j.metadata.name}" for j in jobs] + [f"pod/{p.metadata.name}" for p in pods]


@pytest.fixture
def drainer(cluster: Cluster, namespace: str, tmp_path: Path) -> Drainer:
    return Drainer(cluster, namespace, tmp_path)


@pytest.fixture
def fenced_drainer(cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drainer]:
    """A ``Drainer`` in a namespace of the test's own, for quotas and limits no other test may meet."""
    name = make_namespace(cluster, request.node.name.removeprefix("test_"))
    yield Drainer(cluster, name, tmp_path)
    cluster.core.delete_namespace(name, propagation_policy="Background")
