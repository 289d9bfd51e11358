"""The contract between the drain loop and an executor.

An executor turns an ``AttemptLaunch`` into an ``AttemptResult`` and never raises for
anything the phase or the platform did: every failure comes back classified, with a
message and log pointers. The drain loop owns threads, the database and selection;
the executor owns processes or Jobs, log streaming and classification inputs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, LogMode
from batchdrain.launch import AttemptLaunch
from batchdrain.logstore import LogSink, LogStoreError, LogStoreUnreadable

# Called with what an executor learns early (Job name, pod UID, node): written at once
# so a controller killed mid-attempt leaves enough to adopt or explain it.
AttemptUpdate = Callable[[AttemptProgress], None]


@dataclass
class StopSignal:
    """Set when the controller got SIGTERM; ``deadline`` is when collection gives up."""

    event: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    _listeners: list[Callable[[], None]] = field(default_factory=list, repr=False, compare=False)

    def request(self, grace_seconds: float) -> None:
        if not self.event.is_set():
            self.deadline = time.monotonic() + grace_seconds
            self.event.set()
            for listener in list(self._listeners):
                listener()

    def on_request(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the stop is requested (at once if it already was).

        So that waiters sleeping on something else (an executor's watch events) wake
        for the stop without polling for it. It runs in the requesting thread, which
        may be a signal handler: it must be quick and take no lock that the
        interrupted thread may hold. It may run twice when the two race.
        """
        self._listeners.append(listener)
        if self.event.is_set():
            listener()

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True)
class OrphanAttempt:
    """An attempt left unfinished by a controller that is gone (its lease expired)."""

    launch: AttemptLaunch
    session_id: str
    job_name: str | None
    pod_uid: str | None
    started_at_iso: str | None
    attempt_pk: int = 0
    pid: int | None = None
    host: str | None = None


def store_failure(err: LogStoreError, *, job_name: str | None = None, left_running: bool = False,
                  log_mode: LogMode = LogMode.SPLIT) -> AttemptResult:
    """The log store failed under an attempt: the controller's failure, never the phase's.

    Charged to nothing; ``halt`` stops the session from starting more; ``left_running``
    when the work goes on without us (a Job), so the next session adopts it and resumes
    its logs from what the store holds.
    """
    where = "; Job left in place for the next session to adopt" if left_running else ""
    what = "log store unreadable" if isinstance(err, LogStoreUnreadable) else "log store failed"
    result = AttemptResult(
        FailureClass.API_ERROR, f"{what}: {err.strerror or err}{where}", None,
        "the controller could not store the attempt's logs", job_name=job_name, log_mode=log_mode,
        raw_status={"log_store_error": str(err)}, charged=False)
    result.left_running = left_running
    result.halt = f"{what}: {err.strerror or err}"
    return result


class Executor(Protocol):
    name: str

    def begin(self, *, session_id: str, sink: LogSink) -> None:
        """Session start: open watches, check capabilities (split log streams...)."""

    def execute(
        self, launch: AttemptLaunch, *, stop: StopSignal, on_update: AttemptUpdate
    ) -> AttemptResult:
        """Run one attempt to its end (or until ``stop`` expires); never raises."""

    def adopt(self, orphan: OrphanAttempt, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        """Finish the record of an attempt whose controller died."""

    def end(self) -> list[str]:
        """Session end: close watches; return what the session left behind (leak audit)."""

    def unavailable(self) -> str | None:
        """Why no attempt should start now (the cluster's API is lost), or None."""

    def left_for_adoption(self) -> list[str]:
        """What this session left running on purpose for the next one (not leaks)."""

    def holder_pod_gone(self, namespace: str, name: str) -> bool | None:
        """Whether another controller's pod is gone (True), still there (False), or unknown."""

    def describe(self) -> dict[str, Any]:
        """Facts for the session's identity record (cluster version, namespace, ...)."""


__all__ = ["AttemptLaunch", "AttemptUpdate", "Executor", "OrphanAttempt", "StopSignal", "store_failure"]
