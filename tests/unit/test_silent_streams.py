"""A stream silent past its read timeout: ``Silent``, resumed without counting a failure.

A watch with nothing to report and a phase that prints nothing are as silent as a
server gone quiet, so a read timeout on an open stream must not spend the failure
budget (the reflector would give the API up after a quiet minute); the silent server
is caught when the resumed request goes unanswered, under the retry policy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from batchdrain.kube import Silent, Unreachable
from batchdrain.kube.responses import LogStream
from batchdrain.kube.watch import Reflector


class TimingOut:
    """A urllib3 response whose next read times out, as a silent server's does."""

    def stream(self, _amount: int, decode_content: bool = True) -> Iterator[bytes]:
        yield b"some bytes\n"
        raise urllib3.exceptions.ReadTimeoutError(None, "/log", "Read timed out.")  # type: ignore[arg-type]

    def close(self) -> None:
        return None

    def release_conn(self) -> None:
        return None


def test_a_read_timeout_on_an_open_stream_is_silent_not_broken() -> None:
    stream = LogStream(TimingOut())
    got = []
    with pytest.raises(Silent) as caught:
        for chunk in stream:
            got.append(chunk)
    assert got == [b"some bytes\n"]
    assert isinstance(caught.value, Unreachable)  # still retriable where a request is retried


class SilentThenEvents:
    def __init__(self, silent: bool) -> None:
        self._silent = silent

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._silent:
            raise Silent("stream silent past its read timeout")
        yield "ADDED", {"metadata": {"name": "job-1", "resourceVersion": "7"}}

    def close(self) -> None:
        return None


def test_silent_watches_do_not_spend_the_failure_budget() -> None:
    failures: list[object] = []
    events: list[tuple[str, str]] = []
    seen = threading.Event()
    opened = {"count": 0}

    def watch(selector: str, *, resource_version: str, timeout_seconds: int) -> SilentThenEvents:
        opened["count"] += 1
        return SilentThenEvents(silent=opened["count"] <= 5)

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        events.append((kind, obj["metadata"]["name"]))
        seen.set()

    # A zero budget: a second failure in a row would stop the reflector at once.
    reflector = Reflector(kind="jobs", label_selector="a=b", list_fn=lambda selector: ([], "1"),
                          watch_fn=watch, on_event=on_event, on_failure=failures.append,
                          failure_budget_seconds=0.0)
    reflector.start()
    try:
        assert seen.wait(10), "the reflector stopped watching after silent streams"
    finally:
        reflector.stop(timeout=5)
    assert failures == [] and reflector.failed is None
    assert reflector.silences == 5
    assert events[0] == ("ADDED", "job-1")
