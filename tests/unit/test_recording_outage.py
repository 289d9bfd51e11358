"""An attempt's end while the database is lost: the session halts, the end is kept under the lease.

Regression (issue 16, fault 2): an end that could not be written past the retry bound
raised out of the worker, and the attempts it held were left to whatever the next
session could make of them. Now the first failure halts the session (nothing new is
claimed) and the write goes on being tried while the session's lease, as it stood
then, keeps other sessions off the phase; past it the attempt is named as left open.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from batchdrain.db import AttemptEnd, DatabaseFull, DatabaseUnavailable
from batchdrain.domain import AttemptResult, FailureClass, Phase, PhaseSpec, PhaseState
from batchdrain.drain.observer import SilentObserver
from batchdrain.drain.recording import AttemptRecorder
from batchdrain.metrics import Metrics
from batchdrain.settings import Settings


class FailingDatabase:
    """Refuses ``failures`` writes of attempt ends, then takes them."""

    backend = "sqlite"

    def __init__(self, failures: int, error: DatabaseUnavailable) -> None:
        self.failures = failures
        self.error = error
        self.finished: list[tuple[int, PhaseState]] = []
        self.budgets: list[float] = []

    def finish_attempts(self, ends: Sequence[AttemptEnd]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        self.finished += [(end.attempt_pk, end.phase_state) for end in ends]

    @contextmanager
    def retry_budget(self, seconds: float) -> Iterator[None]:
        self.budgets.append(seconds)
        yield


class Sink:
    def location(self) -> str:
        return "/logs"


PHASE = Phase(run_id="r", phase_id="p1", state=PhaseState.EXECUTING, attempts=1,
              spec=PhaseSpec(command=("true",)), created_seq=1)
SUCCEEDED = AttemptResult(FailureClass.SUCCEEDED, "exit 0", 0)


def recorder(db: FailingDatabase, lease_left: float) -> AttemptRecorder:
    return AttemptRecorder(db=db, sink=Sink(), settings=Settings(), metrics=Metrics(registry=None),  # type: ignore[arg-type]
                           observer=SilentObserver(), lease_left=lambda: lease_left)


def test_an_end_refused_for_a_while_halts_the_session_and_is_written_under_the_lease() -> None:
    db = FailingDatabase(2, DatabaseUnavailable("database postgresql://db unavailable: connection refused"))
    rec = recorder(db, lease_left=60.0)
    rec.finish(PHASE, 11, 1, SUCCEEDED)
    assert db.finished == [(11, PhaseState.COMPLETE)], "the real outcome was not written"
    assert rec.halt is not None and "unavailable" in rec.halt and "stopped selecting phases" in rec.halt
    assert rec.unrecorded == []
    # A group write is tried once (budget 0: then written alone); the writes under the
    # lease are bounded by it, less the margin.
    bounded = [b for b in db.budgets if b != 0.0]
    assert bounded and all(0 < b <= 55.0 for b in bounded), db.budgets


def test_an_end_still_refused_when_the_lease_runs_out_is_left_open_and_named() -> None:
    db = FailingDatabase(10**6, DatabaseFull("database full: sqlite:///db: database or disk is full"))
    rec = recorder(db, lease_left=0.0)  # nothing of the lease left: the first failure is the last
    rec.finish(PHASE, 11, 1, SUCCEEDED)
    assert db.finished == []
    assert rec.halt is not None and rec.halt.startswith("database full")
    assert rec.unrecorded == ["r/p1 attempt 1"]
