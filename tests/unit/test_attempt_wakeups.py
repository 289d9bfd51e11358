"""A running attempt sleeps on its watch events: what wakes it besides them.

With ``tick_seconds`` and ``idle_seconds`` far beyond any of these tests, an attempt
that depended on a clock to notice a stop request or its deadline would hang here
(the bounded joins then fail the test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchdrain.domain import FailureClass
from batchdrain.executors.base import StopSignal
from batchdrain.executors.kubernetes import KubernetesExecutor, logbook, outcome
from tests.unit.fake_kube import Hang, Out, Schedule, Start
from tests.unit.test_kube_executor import SESSION, Harness, launch, script, wait_for

NEVER = 600.0


def sleepy_executor(h: Harness) -> KubernetesExecutor:
    ex = KubernetesExecutor(h.api, h.settings, tick_seconds=NEVER, idle_seconds=NEVER,
                            job_condition_grace_seconds=0.5)
    ex.begin(session_id=SESSION, sink=h.sink)
    h.executors.append(ex)
    return ex


def test_a_stop_request_wakes_a_running_attempt(tmp_path: Path) -> None:
    h = Harness(tmp_path, script(Schedule(), Start(), Out(b"working\n"), Hang()))
    try:
        ex = sleepy_executor(h)
        stop = StopSignal()
        worker, box = h.start(ex, launch(), stop)
        # Running, both streams followed, and the attempt asleep (no pod event is to come).
        assert wait_for(lambda: sum(r["follow"] for r in h.fake.log_requests) >= 2)
        stop.request(0.0)
        worker.join(30)
        assert box, "the stop request did not wake the attempt"
        assert box[0].failure_class is FailureClass.CONTROLLER_INTERRUPTED
        assert box[0].left_running
    finally:
        h.close()


def test_a_running_attempt_wakes_for_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcome, "DEADLINE_MARGIN_SECONDS", 0.0)  # the message
    monkeypatch.setattr("batchdrain.executors.kubernetes.live.DEADLINE_MARGIN_SECONDS", 0.0)  # the wait
    # The container hangs (no activeDeadlineSeconds in the fake): its follow never ends.
    monkeypatch.setattr(logbook, "LOG_JOIN_SECONDS", 0.5)
    h = Harness(tmp_path, script(Schedule(), Start(), Out(b"working\n"), Hang()))
    try:
        ex = sleepy_executor(h)
        worker, box = h.start(ex, launch(timeout=1.0))
        worker.join(30)
        assert box, "the attempt slept past its deadline"
        assert box[0].failure_class is not FailureClass.SUCCEEDED
        assert "deadline" in box[0].message.lower(), box[0].message
    finally:
        h.close()


def test_a_listener_hears_a_stop_requested_before_or_after_it_listens() -> None:
    heard: list[str] = []
    stop = StopSignal()
    stop.on_request(lambda: heard.append("before"))
    stop.request(1.0)
    stop.request(1.0)  # a second request is no new stop
    stop.on_request(lambda: heard.append("after"))
    assert heard == ["before", "after"]
