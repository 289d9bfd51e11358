"""Fault tier: the e2e harness plus a way to stop and start cluster components.

These tests break the cluster on purpose (the apiserver stopped, the kubelet restarted,
the node deleted), so beyond a KUBECONFIG they need ``BATCHDRAIN_FAULTS_CONTROL``: a
command taking ``stop|start|restart COMPONENT``. For the cluster ``make test`` builds
it defaults to ``bash hack/cluster/control.sh``; for kind use ``bash hack/kind/control.sh``.
A missing control command is a failure, never a skip.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import Cluster, cluster, drainer, namespace, wait_for  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
OWN_CLUSTER_KUBECONFIG = "/var/lib/batchdrain-cluster/admin.kubeconfig"

Control = Callable[[str, str], None]


def _control_command() -> list[str]:
    given = os.environ.get("BATCHDRAIN_FAULTS_CONTROL")
    if given:
        return shlex.split(given)
    if os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] == OWN_CLUSTER_KUBECONFIG:
        return ["bash", str(ROOT / "hack/cluster/control.sh")]
    pytest.fail("fault tests need BATCHDRAIN_FAULTS_CONTROL (a command taking stop|start|restart "
                "COMPONENT; hack/kind/control.sh for kind)", pytrace=False)


def apiserver_ready(target: Cluster) -> bool:
    try:
        client.VersionApi(target.core.api_client).get_code(_request_timeout=3)
        target.core.list_namespace(limit=1, _request_timeout=3)
        return True
    except (ApiException, OSError, urllib3.exceptions.HTTPError):
        return False


@pytest.fixture
def control(cluster: Cluster) -> Iterator[Control]:  # noqa: F811 (the fixture, by name)
    command = _control_command()
    stopped: set[str] = set()

    def run(verb: str, component: str) -> None:
        subprocess.run([*command, verb, component], check=True, timeout=120, cwd=ROOT)
        if verb == "stop":
            stopped.add(component)
        elif verb in ("start", "restart"):
            stopped.discard(component)

    yield run
    # whatever a failed test left stopped comes back, so the next test has a cluster
    for component in list(stopped):
        subprocess.run([*command, "start", component], check=False, timeout=120, cwd=ROOT)
    wait_for(lambda: apiserver_ready(cluster), "the apiserver to be ready again", timeout=120)


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
