"""The node's and the control plane's own daemons restarted under running phases (issue 16.3, 16.4).

A kubelet restart cuts every log follow (the apiserver proxies them to the kubelet) and
the node's status updates; a containerd restart cuts the kubelet's runtime connection
while the containers, held by their shims, keep running; an etcd restart makes the
apiserver fail requests and end watches for a few seconds. None of them ends a
phase: each one must finish as it would have, its log complete with no line lost or
repeated, nothing of the session left behind.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.e2e.conftest import Drainer, wait_for
from tests.faults.conftest import Control, apiserver_ready
from tests.faults.test_cluster_faults import (
    AFTER_OUTAGE,
    assert_clean_outcome,
    assert_lines_exactly_once,
    counting_phase,
    running_pods,
)

PHASES = 4


@pytest.mark.parametrize("component", ["kubelet", "containerd", "etcd"])
def test_component_restarted_under_running_phases(drainer: Drainer, control: Control, component: str) -> None:
    drainer.import_rows([{"run_id": component, "phase_id": f"p{i}", "command": counting_phase(30)}
                         for i in range(PHASES)])
    proc = drainer.start_drain("--parallelism", str(PHASES), *AFTER_OUTAGE)
    try:
        wait_for(lambda: running_pods(drainer) >= 2, "two running pods", timeout=180)
        time.sleep(3)  # a few lines printed and followed before the cut
        control("restart", component)
        wait_for(lambda: apiserver_ready(drainer.cluster), "the apiserver answering", timeout=120)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    attempts = assert_clean_outcome(drainer, (proc.returncode, err), PHASES)
    assert proc.returncode == 0, err
    # A restart of a daemon is not the phase's failure: one attempt each, all succeeded.
    assert Counter(a.failure_class for a in attempts) == {"succeeded": PHASES}, [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    for a in attempts:
        assert_lines_exactly_once(a)
