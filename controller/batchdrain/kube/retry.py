"""The one retry policy of the Kubernetes seam, as a wrapper around any ``KubeApi``.

Transient failures (429, 5xx, connection errors) are retried with jittered exponential
backoff, honouring the server's Retry-After, bounded both in attempts and in time by
``Settings.retry_attempts`` / ``retry_max_seconds`` read at call time. Nothing else in
batchdrain retries API calls, so the bound holds end to end. A 409 on create is
``AlreadyExists`` and is never retried: the caller adopts the Job instead.

Being a wrapper (not a decorator on the real client) lets the unit tests put the very
same policy in front of the in-memory fake and inject 429 storms into it. Only the
opening of a stream is retried; a stream that breaks later is the caller's to resume
(watches from their resourceVersion, logs from their last timestamp).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from batchdrain.kube.api import KubeApi, KubeObject, LogStreamName, Stream, WatchEvent
from batchdrain.kube.errors import KubeError, Unreachable
from batchdrain.settings import Settings

T = TypeVar("T")

# Called once per retry with (operation, error): the metrics layer counts API retries.
RetryHook = Callable[[str, KubeError], None]

_BASE_WAIT = 0.1
_MAX_WAIT = 10.0


def _is_retriable(error: BaseException) -> bool:
    return isinstance(error, KubeError) and error.retriable


class _Wait:
    """Retry-After when the server gave one (capped), jittered exponential otherwise."""

    def __init__(self) -> None:
        self._fallback = wait_random_exponential(multiplier=_BASE_WAIT, max=_MAX_WAIT)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, KubeError) and error.retry_after is not None:
            # A small random share on top so that many workers told "retry in 1s" by the
            # same 429 do not come back in lockstep.
            jitter: float = self._fallback(state) * 0.1
            return min(max(error.retry_after, 0.0) + jitter, _MAX_WAIT * 3)
        return float(self._fallback(state))


class RetryingKubeApi:
    """``KubeApi`` with the seam's retry policy in front of every call."""

    def __init__(self, inner: KubeApi, settings: Settings, *, on_retry: RetryHook | None = None) -> None:
        self.inner = inner
        self._settings = settings
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self.retries = 0  # total retries so far; read by metrics and tests
        # Set by the first call that got an answer: from then on a refused connection
        # means the server is restarting, not that the kubeconfig points nowhere.
        self._reached = False

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        # Fast path: most calls succeed first time, and building tenacity's machinery
        # for each of them costs more CPU than the rest of an attempt's bookkeeping.
        try:
            result = fn()
            self._reached = True
            return result
        except KubeError as err:
            if not err.retriable:
                raise
            first: KubeError | None = err

        def again() -> T:
            # Tenacity's first "attempt" replays the failure we already had, so the
            # attempt count and the waits are exactly the policy's.
            nonlocal first
            if first is not None:
                error, first = first, None
                raise error
            return fn()

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            with self._lock:
                self.retries += 1
            if self._on_retry is not None and isinstance(error, KubeError):
                self._on_retry(operation, error)

        by_count = stop_after_attempt(self._settings.retry_attempts)
        by_time = stop_after_delay(self._settings.retry_max_seconds)

        def stop(state: RetryCallState) -> bool:
            """A busy server (429, 5xx) gets ``retry_attempts`` tries; an absent one gets time.

            An apiserver restart refuses connections for several seconds, which a count of
            quick tries used up in one or two; ``retry_max_seconds`` is the bound that
            matches an outage. A server never reached fails fast instead (a wrong URL).
            """
            if by_time(state):
                return True
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            if self._reached and isinstance(error, Unreachable):
                return False
            return bool(by_count(state))

        retrying = Retrying(
            retry=retry_if_exception(_is_retriable),
            stop=stop,
            wait=_Wait(),
            before_sleep=before_sleep,
            reraise=True,
        )
        result = retrying(again)
        self._reached = True
        return result

    def create_job(self, body: KubeObject) -> KubeObject:
        return self._call("create_job", lambda: self.inner.create_job(body))

    def get_job(self, name: str) -> KubeObject:
        return self._call("get_job", lambda: self.inner.get_job(name))

    def delete_job(self, name: str, *, propagation: str = "Background") -> None:
        self._call("delete_job", lambda: self.inner.delete_job(name, propagation=propagation))

    def get_pod(self, name: str) -> KubeObject:
        return self._call("get_pod", lambda: self.inner.get_pod(name))

    def list_jobs(self, label_selector: str) -> tuple[list[KubeObject], str]:
        return self._call("list_jobs", lambda: self.inner.list_jobs(label_selector))

    def list_pods(self, label_selector: str) -> tuple[list[KubeObject], str]:
        return self._call("list_pods", lambda: self.inner.list_pods(label_selector))

    def watch_jobs(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> Stream[WatchEvent]:
        return self._call(
            "watch_jobs",
            lambda: self.inner.watch_jobs(
                label_selector, resource_version=resource_version, timeout_seconds=timeout_seconds
            ),
        )

    def watch_pods(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> Stream[WatchEvent]:
        return self._call(
            "watch_pods",
            lambda: self.inner.watch_pods(
                label_selector, resource_version=resource_version, timeout_seconds=timeout_seconds
            ),
        )

    def stream_pod_log(
        self,
        name: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        since_time: str | None = None,
        stream: LogStreamName | None = None,
        tail_lines: int | None = None,
    ) -> Stream[bytes]:
        return self._call(
            "stream_pod_log",
            lambda: self.inner.stream_pod_log(
                name,
                container=container,
                follow=follow,
                timestamps=timestamps,
                since_time=since_time,
                stream=stream,
                tail_lines=tail_lines,
            ),
        )

    def create_event(self, *, involved: KubeObject, reason: str, message: str, warning: bool = False) -> None:
        self._call("create_event", lambda: self.inner.create_event(
            involved=involved, reason=reason, message=message, warning=warning))

    def list_events(self, *, name: str, uid: str | None = None) -> list[KubeObject]:
        return self._call("list_events", lambda: self.inner.list_events(name=name, uid=uid))

    def remove_pod_finalizer(self, name: str, finalizer: str) -> None:
        self._call("remove_pod_finalizer", lambda: self.inner.remove_pod_finalizer(name, finalizer))

    def delete_pod(self, name: str, *, uid: str | None = None) -> None:
        self._call("delete_pod", lambda: self.inner.delete_pod(name, uid=uid))

    def evict_pod(self, name: str) -> None:
        self._call("evict_pod", lambda: self.inner.evict_pod(name))

    def server_version(self) -> dict[str, str]:
        return self._call("server_version", self.inner.server_version)

    def namespace_exists(self) -> bool | None:
        return self._call("namespace_exists", self.inner.namespace_exists)

    def kueue_version(self) -> str | None:
        return self._call("kueue_version", self.inner.kueue_version)

    def local_queue_exists(self, name: str, *, group_version: str) -> bool | None:
        return self._call("local_queue_exists",
                          lambda: self.inner.local_queue_exists(name, group_version=group_version))

    def can_i(self, verb: str, resource: str, *, subresource: str | None = None) -> bool:
        return self._call("can_i", lambda: self.inner.can_i(verb, resource, subresource=subresource))
