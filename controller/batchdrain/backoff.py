"""Retry backoff: how long a failed phase waits before it is a candidate again. Pure.

A CronJob that starts a session every few minutes would otherwise retry a failed phase
at the next session, and the one after, until ``--max-attempts`` is spent within
minutes: a dependency that is down for a quarter of an hour costs the phase for good.
The wait grows with each failed attempt (``delay * factor^(n-1)``, capped), so a
flapping phase backs off while a one-off failure is retried soon. Transient classes
(the platform's fault, not the phase's) may have a flat delay of their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batchdrain.domain import TRANSIENT_CLASSES, FailureClass
from batchdrain.settings import Settings


@dataclass(frozen=True)
class Backoff:
    delay_seconds: float = 60.0
    factor: float = 2.0
    max_seconds: float = 3600.0
    transient_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(delay_seconds=settings.retry_delay_seconds, factor=settings.retry_backoff_factor,
                   max_seconds=settings.retry_delay_max_seconds,
                   transient_seconds=settings.transient_retry_delay_seconds)

    def delay(self, failed_attempts: int, failure_class: FailureClass) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed attempt (1-based, counted
        since the last ``batchdrain retry``) that ended with ``failure_class``."""
        if failure_class in TRANSIENT_CLASSES and self.transient_seconds is not None:
            return self.transient_seconds
        # At most 64 doublings are ever told apart under the cap; the bound keeps
        # factor^exponent a finite float whatever the attempt count (factor <= 100).
        exponent = min(max(0, failed_attempts - 1), 64)
        return min(self.max_seconds, self.delay_seconds * self.factor ** exponent)

    def eligible_at(self, finished_at: dt.datetime, failed_attempts: int,
                    failure_class: FailureClass) -> dt.datetime | None:
        """When the phase may run again; None when at once (no delay)."""
        seconds = self.delay(failed_attempts, failure_class)
        return finished_at + dt.timedelta(seconds=seconds) if seconds > 0 else None

