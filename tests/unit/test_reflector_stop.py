"""Stopping a watch whose blocked read blows up on close is not a watch failure.

Regression: on the real cluster, stopping an adopted session's reflector closed its
HTTP response under a blocked read; http.client raised AttributeError and the reflector
reported it as a failure, which failed every attempt of the live session.
"""

from __future__ import annotations

import threading

from batchdrain.kube.watch import Reflector


class BlockingStream:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self):
        self.closed.wait(10)
        raise AttributeError("'NoneType' object has no attribute 'read'")

    def close(self) -> None:
        self.closed.set()


def test_stop_during_a_blocked_read_does_not_report_failure():
    failures: list[object] = []
    stream = BlockingStream()
    watching = threading.Event()

    def watch(selector: str, *, resource_version: str, timeout_seconds: int) -> BlockingStream:
        watching.set()
        return stream

    reflector = Reflector(kind="pods", label_selector="a=b", list_fn=lambda selector: ([], "1"),
                          watch_fn=watch, on_event=lambda kind, obj: None, on_failure=failures.append,
                          failure_budget_seconds=5)
    reflector.start()
    assert watching.wait(5)
    reflector.stop(timeout=5)
    assert not reflector.alive
    assert failures == [] and reflector.failed is None
