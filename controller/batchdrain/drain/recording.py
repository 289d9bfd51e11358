"""Recording what an attempt did: its end written, its phase released, parked or not charged.

The drain loop's workers hand every executor result here. An executor call that raises
becomes a recorded ``api_error`` (not charged: the controller's bug; one that says the
controller ran out of descriptors or processes also halts the session), a log that could
not be stored whole or a log store that failed sets ``halt`` (the session stops
starting attempts), an attempt left running stays open for adoption, an attempt the
controller's own failure ended puts its phase back uncounted, and a repeated identical
failure parks the phase (smart retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from batchdrain.backoff import Backoff
from batchdrain.classify import park_reason
from batchdrain.db import AttemptEnd, Claim, Database, DatabaseUnavailable
from batchdrain.domain import (
    TRANSIENT_CLASSES,
    AttemptHistoryItem,
    AttemptProgress,
    AttemptResult,
    FailureClass,
    Phase,
    PhaseState,
    utcnow,
)
from batchdrain.drain.group_commit import GroupCommit
from batchdrain.drain.observer import DrainObserver
from batchdrain.executors.resources import exhausted
from batchdrain.logstore import LogSink
from batchdrain.metrics import Metrics
from batchdrain.settings import Settings

# How long before this session's lease runs out it stops writing what it holds: past
# it, another session may adopt the attempt and write its own end.
LEASE_MARGIN_SECONDS = 5.0


class AttemptRecorder:
    """Writes each attempt's end; remembers why the session must stop, if it must."""

    def __init__(self, *, db: Database, sink: LogSink, settings: Settings, metrics: Metrics,
                 observer: DrainObserver, lease_left: Callable[[], float] = lambda: 0.0) -> None:
        self.db = db
        self.sink = sink
        self.settings = settings
        self.metrics = metrics
        self.observer = observer
        self._lease_left = lease_left
        self._lock = threading.Lock()
        # Why the session stops starting attempts (a full or failing log store, a lost
        # database), else None.
        self.halt: str | None = None
        # Attempts whose end could not be written before the lease ran out: "run/phase attempt N".
        self.unrecorded: list[str] = []
        # On Postgres each end keeps its own transaction (an attempt row, then its phase),
        # written concurrently as before: a group locks several phases while the heartbeat
        # locks all of this session's in another order, and the two could deadlock.
        # SQLite's one writer serialises both.
        self.ends: GroupCommit[AttemptEnd] | None = (
            GroupCommit(self._write_group) if db.backend == "sqlite" else None)

    def halting(self, err: DatabaseUnavailable) -> None:
        """The database is lost past the retry bound: stop starting attempts."""
        with self._lock:
            self.halt = self.halt or f"{err}; stopped selecting phases"

    def write(self, record: Callable[[], None], *, what: str) -> bool:
        """Run one write of what this session holds; on a lost database, halt and keep trying under the lease.

        False when the lease ran out first: the attempt stays open for adoption.
        """
        try:
            record()
            return True
        except DatabaseUnavailable as err:
            self.halting(err)
        # The lease as it stands now, not as later heartbeats renew it: a database that
        # takes heartbeats but refuses this write (full) must not keep the session for ever.
        deadline = time.monotonic() + self._lease_left() - LEASE_MARGIN_SECONDS

        def bounded() -> None:
            with self.db.retry_budget(max(deadline - time.monotonic(), 0.0)):
                record()

        def lease_gone(_state: RetryCallState) -> bool:
            return time.monotonic() >= deadline

        retrying = Retrying(retry=retry_if_exception_type(DatabaseUnavailable), stop=lease_gone,
                            wait=wait_exponential(multiplier=0.5, max=5.0), reraise=True)
        try:
            retrying(bounded)
        except DatabaseUnavailable:
            with self._lock:
                self.unrecorded.append(what)
            return False
        return True

    def release(self, claim: Claim, *, session_id: str, to_state: PhaseState) -> None:
        """Give back a phase claimed but not started (the session is stopping)."""
        self.write(lambda: self.db.release_claim(claim, session_id=session_id, to_state=to_state),
                   what=f"{claim.phase.run_id}/{claim.phase.phase_id} attempt {claim.attempt} (never started)")

    def guarded(self, call: Callable[[], AttemptResult], *, what: str) -> AttemptResult:
        """Run an executor call; an exception becomes a recorded ``api_error``, not a crash."""
        started = utcnow()
        try:
            return call()
        except Exception as err:
            # Out of descriptors or processes: nothing more will start, so the session halts.
            return AttemptResult(
                failure_class=FailureClass.API_ERROR,
                message=f"controller error while {what}: {type(err).__name__}: {err}",
                exit_code=None, exit_code_reason="the controller failed before the exit status was read",
                created_at=started, finished_at=utcnow(),
                raw_status={"exception": type(err).__name__, "detail": str(err)[:2000]}, charged=False,
                halt=exhausted(err),
            )

    def finish(self, phase: Phase, attempt_pk: int, attempt: int, result: AttemptResult, *,
               progress: AttemptProgress | None = None) -> None:
        """Write the attempt's end (with ``progress`` not written yet) and release or park its phase."""
        incomplete = [f"{p.stream} {p.incomplete}" for p in result.logs if p.incomplete]
        if incomplete:
            result.message = f"{result.message} [{'; '.join(incomplete)}]"
            with self._lock:
                self.halt = self.halt or (
                    f"log store {self.sink.location()} full, stopped selecting phases: "
                    f"{phase.run_id}/{phase.phase_id} attempt {attempt}: {incomplete[0]}")
        if result.halt:
            with self._lock:
                self.halt = self.halt or (
                    f"{result.halt}; stopped selecting phases ({phase.run_id}/{phase.phase_id} attempt {attempt})")
        if self.write(lambda: self._record(phase, attempt_pk, attempt, result, progress),
                      what=f"{phase.run_id}/{phase.phase_id} attempt {attempt}"):
            self.metrics.record_attempt(result)
            self.observer.attempt_finished(phase, attempt, result)

    def _record(self, phase: Phase, attempt_pk: int, attempt: int, result: AttemptResult,
                progress: AttemptProgress | None) -> None:
        """The database writes of an attempt's end (one transaction, but for reading the history)."""
        if result.left_running:
            self.db.interrupt_attempt(attempt_pk, result, progress=progress)
            return
        if not result.charged:
            # The controller's failure, not the phase's: back to where it was, not counted.
            was = phase.state if phase.state in (PhaseState.QUEUED, PhaseState.FAILED) else (
                PhaseState.FAILED if phase.last_failure_class else PhaseState.QUEUED)
            self._end(AttemptEnd(attempt_pk=attempt_pk, result=result, phase_state=was, progress=progress,
                                 eligible_at=phase.eligible_at))
            return
        parked: str | None = None
        state = PhaseState.COMPLETE if result.succeeded else PhaseState.FAILED
        if not result.succeeded and result.failure_class not in TRANSIENT_CLASSES:
            history = [AttemptHistoryItem(result.failure_class, result.exit_code, result.first_error_line)]
            history += self.db.attempt_history(phase.run_id, phase.phase_id,
                                               self.settings.park_after - 1)
            # Only attempts since the last `batchdrain retry` count.
            parked = park_reason(history[: attempt - phase.retry_base],
                                 park_after=self.settings.park_after)
            if parked:
                state = PhaseState.SKIPPED
        eligible_at = None
        if state is PhaseState.FAILED:
            # Retry backoff: counted over the attempts since the last `batchdrain retry`.
            eligible_at = Backoff.from_settings(self.settings).eligible_at(
                result.finished_at or utcnow(), attempt - phase.retry_base, result.failure_class)
        self._end(AttemptEnd(attempt_pk=attempt_pk, result=result, phase_state=state, parked_reason=parked,
                             progress=progress, eligible_at=eligible_at))

    def _end(self, end: AttemptEnd) -> None:
        """Written with the ends other workers write now (SQLite); else, or if that fails, alone."""
        if self.ends is None or not self.ends.submit(end):
            self.db.finish_attempts([end])

    def _write_group(self, ends: Sequence[AttemptEnd]) -> None:
        # Tried once: on any error each end is written again alone, with its own retries.
        with self.db.retry_budget(0.0):
            self.db.finish_attempts(ends)
