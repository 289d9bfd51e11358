"""One long-lived watch per kind and label selector: list, then watch, forever but bounded.

The executor must see every change to its session's Jobs and Pods without polling
each one. A ``Reflector`` lists first (so it knows the present), watches from the
list's resourceVersion, moves that version forward on every event and BOOKMARK,
relists on 410 Gone (the version fell out of the server's window: changes in between
are replayed as synthetic events, deletions included), and reconnects after a dropped
connection. A watch that sent nothing for its read timeout (``Silent``: quiet, or its
server gone silent) is watched again at once, as after the server's own timeout: a
silent server then fails the new watch's request, which counts. Repeated failures are
bounded in time: past the budget it reports the error once and stops, so the attempts
waiting on it fail as ``api_error`` instead of waiting forever.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

from batchdrain.kube.api import KubeObject, Stream, WatchEvent
from batchdrain.kube.errors import Gone, KubeError, Silent

EventHandler = Callable[[str, KubeObject], None]
FailureHandler = Callable[[KubeError], None]


class ListFn(Protocol):
    def __call__(self, label_selector: str) -> tuple[list[KubeObject], str]: ...


class WatchFn(Protocol):
    def __call__(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> Stream[WatchEvent]: ...


def _metadata(obj: KubeObject) -> KubeObject:
    meta: KubeObject = obj.get("metadata") or {}
    return meta


class Reflector:
    """Feeds ``on_event(type, object)`` from one list+watch; runs in its own thread."""

    def __init__(
        self,
        *,
        kind: str,
        label_selector: str,
        list_fn: ListFn,
        watch_fn: WatchFn,
        on_event: EventHandler,
        on_failure: FailureHandler,
        failure_budget_seconds: float,
        watch_timeout_seconds: int = 300,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.kind = kind
        self.label_selector = label_selector
        self._list = list_fn
        self._watch = watch_fn
        self._on_event = on_event
        self._on_failure = on_failure
        self._budget = failure_budget_seconds
        self._watch_timeout = watch_timeout_seconds
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._stream: Stream[WatchEvent] | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}-{label_selector}", daemon=True)
        # Minimal metadata of every live object, so a relist can tell what vanished.
        self._known: dict[str, KubeObject] = {}
        self.resource_version: str | None = None
        self.failed: KubeError | None = None
        self.relists = 0
        self.reconnects = 0
        self.bookmarks = 0
        self.silences = 0

    def start(self) -> None:
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self, *, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        failing_since: float | None = None
        backoff = self._min_backoff
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch_once()
                failing_since = None
                backoff = self._min_backoff
            except Gone:
                # Too old for the server's watch cache: the present comes from a list.
                self.resource_version = None
            except Silent:
                self.silences += 1
                failing_since = None
                backoff = self._min_backoff
            except KubeError as err:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since > self._budget:
                    self.failed = err
                    self._on_failure(err)
                    return
                self.reconnects += 1
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self._max_backoff)
            except Exception as err:
                if self._stop.is_set():
                    # stop() closed the stream under a blocked read; whatever that read
                    # raised is the close itself, not a failure to report to waiters.
                    return
                # A bug in a handler must not leave waiters hanging on a dead thread.
                failure = KubeError(f"{self.kind} watch handler failed: {err!r}")
                self.failed = failure
                self._on_failure(failure)
                raise

    def _relist(self) -> None:
        items, resource_version = self._list(self.label_selector)
        seen: dict[str, KubeObject] = {}
        for item in items:
            meta = _metadata(item)
            name = str(meta.get("name"))
            seen[name] = {"metadata": {"name": name, "labels": meta.get("labels") or {}}}
            self._on_event("MODIFIED" if name in self._known else "ADDED", item)
        for name, stub in self._known.items():
            if name not in seen:
                self._on_event("DELETED", stub)
        self._known = seen
        self.resource_version = resource_version
        self.relists += 1
        self._synced.set()

    def _watch_once(self) -> None:
        assert self.resource_version is not None
        timeout = int(self._watch_timeout * (1.0 + random.random() * 0.2))
        stream = self._watch(self.label_selector, resource_version=self.resource_version, timeout_seconds=timeout)
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            stream.close()
        try:
            started = time.monotonic()
            received = 0
            for kind, obj in stream:
                received += 1
                meta = _metadata(obj)
                version = meta.get("resourceVersion")
                if kind == "BOOKMARK":
                    self.bookmarks += 1
                elif kind == "DELETED":
                    self._known.pop(str(meta.get("name")), None)
                    self._on_event(kind, obj)
                else:
                    name = str(meta.get("name"))
                    self._known[name] = {"metadata": {"name": name, "labels": meta.get("labels") or {}}}
                    self._on_event(kind, obj)
                if version:
                    self.resource_version = str(version)
                if self._stop.is_set():
                    return
            if not received and time.monotonic() - started < 1.0 and not self._stop.is_set():
                # A server closing watches at once, again and again, must not spin a core.
                self._stop.wait(self._min_backoff)
        finally:
            with self._lock:
                self._stream = None
            stream.close()
