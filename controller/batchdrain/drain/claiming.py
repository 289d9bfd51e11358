"""Claiming for free worker slots: the plan offered a window at a time, and the slots it fills.

A session claims just before it launches, so that several controllers share one
backlog: a claim takes at most as many phases as there are free worker slots, and each
one it takes is handed to a worker at once, so no phase is held that is not about to
run. Every controller plans the same head of the queue, so a claim is offered a window
of the plan (``WINDOW`` phases) and takes the first free ones of it, in plan order (``db.claim_some``:
``FOR UPDATE SKIP LOCKED`` on Postgres): a claim call comes back empty only when the
whole window is held by others, instead of whenever its one phase was.

``PlanCursor`` is pure (what to offer next, what was lost); ``Workers`` counts the
slots and keeps the first error a worker raised, for the session loop to raise.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchdrain.domain import Phase
from batchdrain.report import SKIPPED_EXAMPLES

# Planned phases offered per claim call: enough that three or four controllers, each
# taking up to CLAIM_BATCH from the same head, still find free ones in their window.
WINDOW = 64
# A window that came back empty grows (x4, up to this) for the next call: a plan read
# seconds ago may start with thousands of phases other controllers took since.
MAX_WINDOW = 4096
# Most phases one claim call takes (further bounded by the free worker slots).
CLAIM_BATCH = 8


@dataclass
class LostClaims:
    """Phases another controller claimed first: every one counted, the first ``named`` named.

    A session beside other controllers over a large backlog loses a share of every
    page, so the names are bounded like the report's other lists.
    """

    named: int = SKIPPED_EXAMPLES
    count: int = 0
    keys: list[tuple[str, str]] = field(default_factory=list)

    def add(self, phases: Sequence[Phase]) -> None:
        self.count += len(phases)
        room = max(0, self.named - len(self.keys))
        self.keys += [phase.key for phase in phases[:room]]


class PlanCursor:
    """The planned phases not yet claimed or lost, in plan order."""

    def __init__(self, phases: Iterable[Phase]) -> None:
        self._queue: deque[Phase] = deque(phases)
        self._size = WINDOW

    def __bool__(self) -> bool:
        return bool(self._queue)

    def window(self, size: int | None = None) -> list[Phase]:
        """The next phases to offer a claim: up to ``size`` (by default ``WINDOW``, more after an
        empty claim), all of one state (a claim re-checks it)."""
        size = size or self._size
        out: list[Phase] = []
        for phase in self._queue:
            if len(out) == size or (out and phase.state is not out[0].state):
                break
            out.append(phase)
        return out

    def settle(self, window: Sequence[Phase], claimed: set[int], *, wanted: int) -> list[Phase]:
        """Take the claimed phases off the queue, and the ones lost to another controller; returns the lost.

        A claim takes the free phases of its window in window order, up to ``wanted``: when
        it took fewer, every other phase of the window was taken (or being claimed) by
        someone else; when it took ``wanted``, those it passed over before the last one it
        took were. The rest of the window stays at the head of the queue.
        """
        self._size = WINDOW if claimed else min(self._size * 4, MAX_WINDOW)
        taken = [index for index, p in enumerate(window) if p.created_seq in claimed]
        last = taken[-1] if len(claimed) >= wanted and taken else None
        lost = [p for index, p in enumerate(window)
                if p.created_seq not in claimed and (last is None or index < last)]
        gone = claimed | {p.created_seq for p in lost}
        for _ in window:
            self._queue.popleft()
        self._queue.extendleft(reversed([p for p in window if p.created_seq not in gone]))
        return lost


class Workers:
    """``parallelism`` worker slots over a thread pool; the first exception a worker raised."""

    def __init__(self, pool: cf.ThreadPoolExecutor, parallelism: int) -> None:
        self._pool = pool
        self._free = parallelism
        self._running: set[cf.Future[None]] = set()
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    def reserve(self, most: int, *, timeout: float) -> int:
        """Up to ``most`` free slots, waiting at most ``timeout`` for one; 0 if none came free."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._free > 0 or self._error is not None, timeout=timeout):
                return 0
            if self._error is not None:
                return 0
            taken = min(most, self._free)
            self._free -= taken
            return taken

    def unreserve(self, count: int) -> None:
        with self._changed:
            self._free += count
            self._changed.notify_all()

    def run(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` in a slot reserved before; the slot comes free when it returns."""
        future = self._pool.submit(fn, *args)
        with self._changed:
            self._running.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: cf.Future[None]) -> None:
        error = None if future.cancelled() else future.exception()
        with self._changed:
            self._running.discard(future)
            self._free += 1
            if error is not None and self._error is None:
                self._error = error
            self._changed.notify_all()

    def raise_error(self) -> None:
        """Raise what a worker raised: the session ends, loudly, and claims nothing more."""
        with self._changed:
            error = self._error
        if error is not None:
            raise error

    def wait_idle(self, *, poll: float = 0.5) -> None:
        """Until every worker returned (short waits keep the main thread responsive to SIGTERM)."""
        with self._changed:
            while self._running and self._error is None:
                self._changed.wait(timeout=poll)
        self.raise_error()
