"""Attempt progress written in batches: one transaction a second for every running attempt.

An executor reports what it learns of a running attempt (the Job, its pod, the node)
one fact at a time, and writing each at once cost a database transaction per fact:
more than the claim and the end together. Readers of progress (``sessions watch``)
need it within a second, not at once, and adoption does not need it at all for a
Kubernetes attempt (the Job's name follows from its identity), so reports are merged
per attempt and flushed together every ``FLUSH_SECONDS``; an attempt that ends first
takes its unwritten progress into its end's transaction (``take``).

Written at once, as before: a local process's pid and host. A controller that dies
leaves that process running in its own group, and only the recorded pid lets the
adopting session stop it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from batchdrain.db import Database, DatabaseUnavailable
from batchdrain.domain import AttemptProgress

FLUSH_SECONDS = 1.0


def merged(old: AttemptProgress | None, new: AttemptProgress | None) -> AttemptProgress | None:
    """``new``'s facts over ``old``'s (a field ``new`` leaves ``None`` keeps ``old``'s)."""
    if old is None or new is None:
        return new or old
    changes = {f.name: value for f in dataclasses.fields(new) if (value := getattr(new, f.name)) is not None}
    return dataclasses.replace(old, **changes)


class ProgressBuffer:
    """Unwritten progress per attempt, flushed by its own thread."""

    def __init__(self, db: Database, *, on_error: Callable[[str], None], interval: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._on_error = on_error
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[int, AttemptProgress] = {}
        # What a flush is writing right now: ``take`` returns it too, so that an end
        # committed before that flush still carries every fact.
        self._writing: dict[int, AttemptProgress] = {}

    def put(self, attempt_pk: int, progress: AttemptProgress) -> None:
        with self._lock:
            combined = merged(self._pending.pop(attempt_pk, None), progress)
            if progress.pid is None and combined is not None:
                self._pending[attempt_pk] = combined
                return
        if combined is None:
            return
        try:
            self._db.update_attempt(attempt_pk, combined)
        except DatabaseUnavailable as err:
            # Raising into the executor would end an attempt whose process runs on: keep
            # it for the next flush (or the attempt's end) like any other progress.
            with self._lock:
                self._pending[attempt_pk] = merged(combined, self._pending.get(attempt_pk)) or combined
            self._on_error(f"attempt progress not written yet (kept for the next try): {err}")

    def take(self, attempt_pk: int) -> AttemptProgress | None:
        """What the attempt reported that may not be written yet; it is the caller's to write now."""
        with self._lock:
            return merged(self._writing.get(attempt_pk), self._pending.pop(attempt_pk, None))

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
            self._writing = batch
        if not batch:
            return
        try:
            self._db.update_attempts(list(batch.items()))
        except DatabaseUnavailable as err:
            with self._lock:
                for attempt_pk, progress in batch.items():
                    self._pending[attempt_pk] = merged(progress, self._pending.get(attempt_pk)) or progress
            self._on_error(f"attempt progress not written yet (kept for the next try): {err}")
        finally:
            with self._lock:
                self._writing = {}

    @contextmanager
    def flushing(self) -> Iterator[None]:
        """Flush every ``interval`` while the block runs, and once more after it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self._interval):
                self.flush()

        thread = threading.Thread(target=loop, name="progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=60)
            self.flush()
