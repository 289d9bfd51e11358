"""Job creation pacing: one rate limiter shared by every worker thread of a session.

A drain at parallelism 100 would otherwise create 100 Jobs in the same instant and
meet the API server's priority-and-fairness limits with a burst of 429s.
"""

from __future__ import annotations

import threading
import time


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
