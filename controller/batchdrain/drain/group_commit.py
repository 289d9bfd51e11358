"""Group commit: the ends that workers finish at about the same time, written in one transaction.

Each worker used to write its attempt's end in a transaction of its own: on SQLite, the
one writer's BEGIN, COMMIT (an fsync) and each statement's fixed cost, once per attempt,
were most of the database's CPU per phase. Here the first worker to arrive writes what
is queued by then (its own end first) while later ones wait; when it is done it hands
the queue to the next waiter, which writes everything that queued meanwhile. Under load
a transaction carries many ends; alone, a worker writes its own end at once.

Every worker still returns only once its end is committed, or is told to write it alone:
every group (of one too) is tried once only, and when it fails (a lost database, one
attempt's row gone) each of its workers writes its own end on the path it always had,
with its own retries, halting and lease: one bad end cannot fail the others, and a
database outage holds no worker behind another's retries.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

# Ends in one transaction at most: a group of the whole parallelism still commits in
# tens of milliseconds, and its waiters are not held behind one long statement list.
GROUP_MOST = 64


class _Ticket(Generic[T]):
    __slots__ = ("item", "leads", "woken", "written")

    def __init__(self, item: T) -> None:
        self.item = item
        self.woken = threading.Event()
        self.written = False
        self.leads = False


class GroupCommit(Generic[T]):
    """Writes items queued by many threads in groups, one group at a time."""

    def __init__(self, write: Callable[[Sequence[T]], None], *, most: int = GROUP_MOST) -> None:
        self._write = write
        self._most = most
        self._lock = threading.Lock()
        self._queue: deque[_Ticket[T]] = deque()
        self._leading = False
        # Groups written and the items they held, groups that failed (read by tests and profiles).
        self.groups = 0
        self.grouped = 0
        self.failed_groups = 0
        self.last_failure: str | None = None

    def submit(self, item: T) -> bool:
        """True once ``item`` is committed; False: its group failed, the caller writes it alone.

        Blocks while an earlier group is written; an item with nothing queued beside it
        is a group of one, and whatever queues meanwhile goes in the next group.
        """
        ticket = _Ticket(item)
        with self._lock:
            self._queue.append(ticket)
            leads = not self._leading
            self._leading = True
        if not leads:
            ticket.woken.wait()
            if not ticket.leads:
                return ticket.written
        # The leader's own ticket is at the head: leadership passes only to the head,
        # and is given up only when the queue is empty.
        with self._lock:
            group = [self._queue.popleft() for _ in range(min(self._most, len(self._queue)))]
        try:
            self._write_group(group)
        finally:
            self._hand_over(group)
        return ticket.written

    def _write_group(self, group: list[_Ticket[T]]) -> None:
        try:
            self._write([t.item for t in group])
        except Exception as err:
            # Not lost: every item is written again alone, where its own error is
            # recorded on its attempt or halts the session.
            self.failed_groups += 1
            self.last_failure = f"{type(err).__name__}: {err}"
            return
        for t in group:
            t.written = True
        self.groups += 1
        self.grouped += len(group)

    def _hand_over(self, group: list[_Ticket[T]]) -> None:
        with self._lock:
            if self._queue:
                head = self._queue[0]
                head.leads = True
                head.woken.set()
            else:
                self._leading = False
        for t in group[1:]:
            t.woken.set()
