"""``Database``: every read and write of the backlog, behind one object.

The rest of batchdrain never sees SQLAlchemy: it calls these methods and gets back
domain values and the frozen records of ``records``. Each method is one transaction
and runs under the seam's one retry policy (``engine``: transient connection and
lock errors only). The work is done by one module per concern, which this facade
composes so that callers keep a single handle:

- ``schema``: the Alembic revision (``upgrade``, ``ensure_schema``);
- ``backlog``: phases in, and the reads selection and retries work from;
- ``sessions``: session rows and heartbeats;
- ``claims``: phases taken for a session, with their attempt rows;
- ``attempts``: attempt records (progress, end) and adoption of orphans;
- ``history``: a session's attempts for reports, paged and aggregated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine

from batchdrain.db.attempts import Attempts
from batchdrain.db.backlog import Backlog
from batchdrain.db.claims import Claims
from batchdrain.db.engine import DatabaseEngine
from batchdrain.db.enqueue import IMPORT_BATCH
from batchdrain.db.history import History
from batchdrain.db.records import (
    AttemptEnd,
    AttemptOpening,
    AttemptRecord,
    AttemptTally,
    Claim,
    ImportCounts,
    NewPhase,
    OrphanRecord,
    PhaseStanding,
    SessionRecord,
)
from batchdrain.db.schema import Schema
from batchdrain.db.sessions import Sessions
from batchdrain.domain import (
    AttemptHistoryItem,
    AttemptProgress,
    AttemptResult,
    Phase,
    PhaseState,
    RunCounts,
)


class Database:
    def __init__(self, url: str, *, retry_attempts: int = 6, retry_max_seconds: float = 30.0) -> None:
        self._engine = DatabaseEngine(url, retry_attempts=retry_attempts, retry_max_seconds=retry_max_seconds)
        self._schema = Schema(self._engine)
        self._backlog = Backlog(self._engine)
        self._sessions = Sessions(self._engine)
        self._claims = Claims(self._engine)
        self._attempts = Attempts(self._engine)
        self._history = History(self._engine)

    # -- the connection -------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._engine.url

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.backend

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tests and benchmarks that seed or inspect tables."""
        return self._engine.engine

    def masked_url(self) -> str:
        return self._engine.masked_url()

    def ping(self) -> None:
        self._engine.ping()

    def dispose(self) -> None:
        self._engine.dispose()

    def retry_budget(self, seconds: float) -> AbstractContextManager[None]:
        """This thread's calls in the block wait up to ``seconds`` for a lost server (see ``engine``)."""
        return self._engine.retry_budget(seconds)

    def silences(self) -> list[str]:
        """One line per connection shut down because its server went silent (``watchdog``)."""
        return [s.line() for s in self._engine.watchdog.silences()]

    # -- schema ---------------------------------------------------------------------
    def upgrade(self) -> str:
        return self._schema.upgrade()

    def current_revision(self) -> str | None:
        return self._schema.current_revision()

    def head_revision(self) -> str | None:
        return self._schema.head_revision()

    def ensure_schema(self, *, auto_upgrade: bool) -> None:
        self._schema.ensure_schema(auto_upgrade=auto_upgrade)

    # -- backlog --------------------------------------------------------------------
    def enqueue(self, phases: list[NewPhase]) -> int:
        return self._backlog.enqueue(phases)

    def enqueue_stream(self, open_rows: Callable[[], Iterable[NewPhase]], *,
                       batch: int = IMPORT_BATCH) -> ImportCounts:
        """Rows of a file, in batches, in one transaction; ``open_rows`` restarts the input."""
        return self._backlog.enqueue_stream(open_rows, batch=batch)

    def known_runs(self) -> set[str]:
        return self._backlog.known_runs()

    def phases(self, run_ids: Iterable[str] | None = None) -> list[Phase]:
        return self._backlog.phases(run_ids)

    def standings(self, run_ids: Iterable[str] | None = None, *,
                  with_durations: bool = False) -> Iterator[PhaseStanding]:
        return self._backlog.standings(run_ids, with_durations=with_durations)

    def duration_medians(self) -> tuple[dict[str, float], float | None]:
        return self._backlog.duration_medians()

    def candidates(self, *, run_ids: list[str], limit: int, max_attempts: int, skip_runs_with_queued: bool,
                   include_parked: bool, exclude_session: str | None = None,
                   now: dt.datetime | None = None) -> list[Phase]:
        return self._backlog.candidates(
            run_ids=run_ids, limit=limit, max_attempts=max_attempts, skip_runs_with_queued=skip_runs_with_queued,
            include_parked=include_parked, exclude_session=exclude_session, now=now)

    def undeclared_queued(self, run_ids: Iterable[str] | None = None) -> dict[str, int]:
        return self._backlog.undeclared_queued(run_ids)

    def run_counts(self, run_ids: Iterable[str] | None = None) -> dict[str, RunCounts]:
        return self._backlog.run_counts(run_ids)

    def attempt_history(self, run_id: str, phase_id: str, limit: int) -> list[AttemptHistoryItem]:
        return self._backlog.attempt_history(run_id, phase_id, limit)

    def retry_phases(self, *, run_ids: list[str], phase_ids: list[str], include_failed: bool) -> int:
        return self._backlog.retry_phases(run_ids=run_ids, phase_ids=phase_ids, include_failed=include_failed)

    # -- sessions -------------------------------------------------------------------
    def create_session(self, *, executor: str, settings: dict[str, Any], identity: dict[str, Any]) -> str:
        return self._sessions.create(executor=executor, settings=settings, identity=identity)

    def set_session_identity(self, session_id: str, identity: dict[str, Any]) -> None:
        self._sessions.set_identity(session_id, identity)

    def heartbeat(self, session_id: str, lease_seconds: float) -> None:
        self._sessions.heartbeat(session_id, lease_seconds)

    def end_session(self, session_id: str, *, status: str, counts: dict[str, Any],
                    report: dict[str, Any] | None, error: str | None = None) -> None:
        self._sessions.end(session_id, status=status, counts=counts, report=report, error=error)

    def close_abandoned(self, session_id: str, *, by: str, why: str) -> bool:
        """Close a dead session's row left ``running`` (no open attempt without an adopter)."""
        return self._sessions.close_abandoned(session_id, by=by, why=why)

    def sessions(self, limit: int = 50) -> list[SessionRecord]:
        """The latest sessions, without their reports (``report`` is None)."""
        return self._sessions.recent(limit)

    def session(self, session_id: str, *, report: bool = True) -> SessionRecord:
        """One session; BadInput if unknown. ``report=False`` does not read its stored report."""
        return self._sessions.get(session_id, report=report)

    def report_value(self, session_id: str, key: str) -> Any:
        """One top-level value of a session's stored report (``durations``...), without reading the rest."""
        return self._sessions.report_value(session_id, key)

    # -- attempts -------------------------------------------------------------------
    def claim(self, phase: Phase, *, session_id: str, lease_seconds: float, executor: str,
              command: list[str], image: str | None, identity: dict[str, Any]) -> Claim | None:
        return self._claims.claim(phase, session_id=session_id, lease_seconds=lease_seconds, executor=executor,
                                    command=command, image=image, identity=identity)

    def claim_some(self, window: Sequence[Phase], *, want: int, session_id: str, lease_seconds: float,
                   executor: str, opening: Callable[[Phase, int], AttemptOpening]) -> list[Claim]:
        return self._claims.claim_some(window, want=want, session_id=session_id, lease_seconds=lease_seconds,
                                         executor=executor, opening=opening)

    def release_claim(self, claim: Claim, *, session_id: str, to_state: PhaseState) -> None:
        self._claims.release(claim, session_id=session_id, to_state=to_state)

    def update_attempt(self, attempt_pk: int, progress: AttemptProgress) -> None:
        self._attempts.update(attempt_pk, progress)

    def update_attempts(self, updates: Sequence[tuple[int, AttemptProgress]]) -> None:
        self._attempts.update_many(updates)

    def finish_attempts(self, ends: Sequence[AttemptEnd]) -> None:
        self._attempts.finish_many(ends)

    def interrupt_attempt(self, attempt_pk: int, result: AttemptResult, *,
                          progress: AttemptProgress | None = None) -> None:
        self._attempts.interrupt(attempt_pk, result, progress=progress)

    def orphaned_attempts(self, *, lease_seconds: float) -> list[OrphanRecord]:
        return self._attempts.orphaned(lease_seconds=lease_seconds)

    def open_attempts_elsewhere(self, *, session_id: str) -> list[OrphanRecord]:
        return self._attempts.open_elsewhere(session_id=session_id)

    def take_over(self, attempt_pk: int, *, session_id: str, lease_seconds: float,
                  holder_gone: str | None = None) -> bool:
        return self._attempts.take_over(attempt_pk, session_id=session_id, lease_seconds=lease_seconds,
                                        holder_gone=holder_gone)

    def attempts(self, *, session_id: str | None = None, run_id: str | None = None,
                 phase_id: str | None = None) -> list[AttemptRecord]:
        return self._attempts.matching(session_id=session_id, run_id=run_id, phase_id=phase_id)

    # -- a session's attempts, in bounded memory (reports, read commands) -------------
    def session_attempts(self, session_id: str) -> Iterator[AttemptRecord]:
        """Every attempt of the session (launched or adopted) in id order, read page by page."""
        return self._history.pages(session_id)

    def phase_attempts(self, session_id: str, *, phase_id: str, run_id: str | None = None) -> list[AttemptRecord]:
        return self._history.of_phase(session_id, phase_id=phase_id, run_id=run_id)

    def running_attempts(self, session_id: str) -> list[AttemptRecord]:
        return self._history.running(session_id)

    def attempts_by_keys(self, keys: Sequence[tuple[str, str, int]]) -> list[AttemptRecord]:
        return self._history.by_keys(keys)

    def attempts_table(self, session_id: str, *, limit: int) -> list[AttemptRecord]:
        """At most ``limit`` attempts: those that did not succeed first, then the latest."""
        return self._history.table(session_id, limit=limit)

    def attempt_tally(self, session_id: str, *, durations: bool = True) -> AttemptTally:
        """Counts by class and duration statistics of the session's attempts, computed in SQL."""
        return self._history.tally(session_id, durations=durations)
