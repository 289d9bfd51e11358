"""Pacing of API calls: Job creation, and the few lists the watches cannot replace.

A drain at parallelism 100 would otherwise create 100 Jobs in the same instant and
meet the API server's priority-and-fairness limits with a burst of 429s: one rate
limiter is shared by every worker thread of a session. And the session watches only
Jobs and Pods, so an attempt that must read Events (a Job with no pod: was it refused?)
lists them on a backing-off schedule of its own (``Backoff``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

# A Job's pod normally appears within a second; the Job controller's FailedCreate Event
# within about as long. Lists start after this and back off to the longest interval.
FIRST_LIST_SECONDS = 2.0
LONGEST_LIST_INTERVAL_SECONDS = 10.0


@dataclass
class Backoff:
    """When to list again: ``first`` seconds after the start, then doubling up to ``longest``.

    Pure (the caller passes its monotonic clock): ``due`` is True at most once per
    interval, so however often the caller looks, it lists at most once per interval.
    """

    # Read when made, not when defined: tests shorten the module's constants.
    first: float = field(default_factory=lambda: FIRST_LIST_SECONDS)
    longest: float = field(default_factory=lambda: LONGEST_LIST_INTERVAL_SECONDS)
    _next: float | None = field(default=None, init=False)
    _interval: float = field(default=0.0, init=False)

    def due(self, now: float, *, age: float) -> bool:
        """Time for the next list? ``age``: seconds since the start (long ago for an adoption)."""
        if self._next is None:
            self._next = now + max(self.first - age, 0.0)
            self._interval = self.first
        if now < self._next:
            return False
        self._next = now + self._interval
        self._interval = min(self._interval * 2, self.longest)
        return True


class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by all worker threads.

    Each caller reserves the next free slot under a lock and waits outside it, on an
    event that a stop request sets, so pacing never delays shutdown.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, *, timeout: float, cancel: threading.Event | None = None) -> bool:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            if slot - now > timeout:
                return False
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            if cancel is not None:
                return not cancel.wait(delay)
            time.sleep(delay)
        return True
