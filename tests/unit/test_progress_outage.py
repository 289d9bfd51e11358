"""A progress write that fails (the database lost) never reaches the executor.

Regression (issue 16, fault 2): the local executor reports a process's pid at once, and
a failure of that write raised inside ``execute`` after the process had started: the
attempt was recorded as ``api_error`` and its phase released while the process ran on.
"""

from __future__ import annotations

from typing import Any

from batchdrain.db import DatabaseUnavailable
from batchdrain.domain import AttemptProgress
from batchdrain.drain.progress import ProgressBuffer


class LostDatabase:
    def __init__(self) -> None:
        self.down = True
        self.written: list[tuple[int, AttemptProgress]] = []

    def update_attempt(self, attempt_pk: int, progress: AttemptProgress) -> None:
        if self.down:
            raise DatabaseUnavailable("database postgresql://db unavailable: connection refused")
        self.written.append((attempt_pk, progress))

    def update_attempts(self, updates: Any) -> None:
        if self.down:
            raise DatabaseUnavailable("database postgresql://db unavailable: connection refused")
        self.written.extend(updates)


def test_a_pid_that_cannot_be_written_is_kept_and_written_later() -> None:
    db = LostDatabase()
    notes: list[str] = []
    buffer = ProgressBuffer(db, on_error=notes.append)  # type: ignore[arg-type]
    buffer.put(7, AttemptProgress(pid=4242, host="h"))  # must not raise into the executor
    assert notes and "not written yet" in notes[0]
    buffer.flush()  # still down: kept again
    assert db.written == []
    db.down = False
    buffer.flush()
    assert [(pk, p.pid) for pk, p in db.written] == [(7, 4242)]


def test_the_attempt_end_takes_what_could_not_be_written() -> None:
    db = LostDatabase()
    buffer = ProgressBuffer(db, on_error=lambda line: None)  # type: ignore[arg-type]
    buffer.put(3, AttemptProgress(pid=99, host="h"))
    taken = buffer.take(3)
    assert taken is not None and taken.pid == 99
