"""``Database``: every read and write of the backlog, in one place.

The rest of batchdrain never sees SQLAlchemy: it calls these methods with and gets
back domain values. Each method is one transaction and runs under the seam's one
retry policy (transient connection and lock errors only).

Claiming is the safety core: a phase moves to EXECUTING only through ``claim``,
which locks the row (``FOR UPDATE SKIP LOCKED`` on Postgres), re-checks its state
and lease in the UPDATE itself, bumps the attempt counter and inserts the attempt
row in the same transaction. Two controllers can therefore never hold one phase,
and an attempt row always exists before anything is launched.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_random_exponential,
)

from batchdrain.db.models import AttemptRow, PhaseRow, RunRow, SessionRow
from batchdrain.domain import (
    AttemptHistoryItem,
    AttemptProgress,
    AttemptResult,
    BadInput,
    FailureClass,
    LogPointer,
    Phase,
    PhaseSpec,
    PhaseState,
    RunCounts,
    utcnow,
)
from batchdrain.identity import mask_secrets, mask_url, url_password

T = TypeVar("T")
MAX_ID = 255
# The statements every attempt runs, built once: building a statement (coercing each
# value, computing its cache key) cost more CPU than running it on SQLite. Values are
# bound at execution; an UPDATE without .values() sets the columns named in them.
_PHASE_COLUMNS = (PhaseRow.id, PhaseRow.run_id, PhaseRow.phase_id, PhaseRow.state, PhaseRow.attempts,
                  PhaseRow.spec, PhaseRow.retry_base, PhaseRow.last_failure_class,
                  PhaseRow.last_failure_reason, PhaseRow.parked_reason, PhaseRow.lease_owner)
_MY_RUNNING_ATTEMPT = select(AttemptRow.id, AttemptRow.attempt).where(
    AttemptRow.session_id == bindparam("session_id"), AttemptRow.run_id == bindparam("key_run_id"),
    AttemptRow.phase_id == bindparam("key_phase_id"), AttemptRow.status == "running")
_LEASE_FREE = or_(PhaseRow.lease_owner.is_(None), PhaseRow.lease_expires_at < bindparam("now"))
# The row lock is taken in a subquery so that a row another controller is claiming right
# now is skipped, not waited for; the UPDATE re-checks state and lease on the row it locked.
_CLAIM_PHASE = (
    update(PhaseRow)
    .where(PhaseRow.id == select(PhaseRow.id)
           .where(PhaseRow.run_id == bindparam("key_run_id"), PhaseRow.phase_id == bindparam("key_phase_id"),
                  PhaseRow.state == bindparam("from_state"), _LEASE_FREE)
           .with_for_update(skip_locked=True)
           .scalar_subquery(),
           PhaseRow.state == bindparam("from_state"), _LEASE_FREE)
    .values(state=PhaseState.EXECUTING.value, attempts=PhaseRow.attempts + 1,
            lease_owner=bindparam("session_id"), updated_at=bindparam("now"),
            lease_expires_at=bindparam("lease_expires_at"))
    .returning(*_PHASE_COLUMNS)
)
_OPEN_ATTEMPT = insert(AttemptRow).returning(AttemptRow.id)
_UPDATE_ATTEMPT = update(AttemptRow).where(AttemptRow.id == bindparam("attempt_pk"))
_ATTEMPT_OF_PHASE = select(AttemptRow.run_id, AttemptRow.phase_id, AttemptRow.raw_status).where(
    AttemptRow.id == bindparam("attempt_pk"))
_RELEASE_PHASE = update(PhaseRow).where(PhaseRow.run_id == bindparam("key_run_id"),
                                        PhaseRow.phase_id == bindparam("key_phase_id"))


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or used; the message is safe to print."""


@dataclass(frozen=True)
class NewPhase:
    run_id: str
    phase_id: str
    spec: PhaseSpec


@dataclass(frozen=True)
class Claim:
    attempt_pk: int
    attempt: int
    phase: Phase


def normalise_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means psycopg 3, our chosen driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise BadInput(f"malformed database URL {mask_url(url)!r}: expected e.g. "
                       "sqlite:///./batchdrain.db or postgresql://user@host/db") from err
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise BadInput(f"unsupported database {parsed.get_backend_name()!r} in "
                       f"{mask_url(url)!r}: use sqlite or postgresql")
    return parsed


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, SATimeoutError):
        # Every pooled connection busy for the pool's timeout: our own threads queueing
        # on a slow server (or a starved host), not a broken database.
        return True
    if isinstance(err, SAOperationalError):
        message = str(err.orig).lower() if err.orig is not None else str(err).lower()
        if "locked" in message or "busy" in message:
            return True
        return bool(getattr(err, "connection_invalidated", False)) or "connection" in message
    return isinstance(err, DBAPIError) and bool(err.connection_invalidated)


def _is_connection_lost(err: BaseException) -> bool:
    """The server is gone or restarting, as opposed to busy: waiting for it is the remedy."""
    if not _is_transient(err):
        return False
    message = str(getattr(err, "orig", None) or err).lower()
    return not ("locked" in message or "busy" in message)


def _pointer_rows(logs: Iterable[LogPointer]) -> list[dict[str, Any]]:
    """Log pointers as stored in ``attempts.logs`` (a documented JSON shape)."""
    return [{"stream": p.stream, "url": p.url, "size_bytes": p.size_bytes, "sha256": p.sha256,
             "incomplete": p.incomplete, "stalled_seconds": p.stalled_seconds} for p in logs]


def _attempt_row(tx: Session, attempt_pk: int) -> AttemptRow:
    row = tx.get(AttemptRow, attempt_pk)
    if row is None:
        raise DatabaseUnavailable(f"attempt {attempt_pk} vanished from the database")
    return row


class Database:
    def __init__(self, url: str, *, retry_attempts: int = 6, retry_max_seconds: float = 30.0) -> None:
        self.url = url
        self._secret = url_password(url)
        parsed = normalise_url(url)
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.backend == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                parent = Path(database).expanduser().resolve().parent
                if not parent.is_dir():
                    raise BadInput(f"database directory does not exist: {parent}")
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise BadInput(f"cannot use database URL {mask_url(url)!r}: {self._clean(err)}") from err
        self._reached = False
        event.listen(self.engine, "connect", self._on_connect)
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and every transaction here begins IMMEDIATE.
        # This process's threads queue for it on a lock, each then taking a pooled
        # connection: queueing on the pool instead (parallelism 100, 15 connections)
        # timed out after 30 s on a starved host and failed the session (found by the
        # 100,000-phase drain benchmark). Other processes still wait via busy_timeout.
        self._writer: AbstractContextManager[Any] = (
            threading.RLock() if self.backend == "sqlite" else nullcontext())
        self._retry_attempts = retry_attempts
        self._retry_max_seconds = retry_max_seconds

    # -- plumbing ---------------------------------------------------------------
    def _on_connect(self, _dbapi_connection: Any, _record: Any) -> None:
        self._reached = True

    def _clean(self, err: BaseException) -> str:
        first = str(getattr(err, "orig", None) or err).strip().splitlines()
        return mask_secrets(first[0] if first else type(err).__name__, [self._secret or ""])

    def masked_url(self) -> str:
        return mask_url(self.url) or ""

    def _stop(self, state: RetryCallState) -> bool:
        """Lock contention gets ``retry_attempts`` tries; a lost server gets ``retry_max_seconds``.

        A Postgres restart refuses connections for seconds, which a count of quick
        tries used up in about one second, failing the session and leaving its
        running attempts open. Time is the bound that matches an outage. A server
        never reached is more likely a wrong URL than an outage: that fails fast.
        """
        if (state.seconds_since_start or 0.0) >= self._retry_max_seconds:
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None and self._reached and _is_connection_lost(error):
            return False
        return state.attempt_number >= self._retry_attempts

    def _retrying(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=self._stop,
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            reraise=True,
        )
        try:
            return retrying(fn)
        except (SAOperationalError, SATimeoutError) as err:
            raise DatabaseUnavailable(
                f"database {self.masked_url()} unavailable: {self._clean(err)}"
            ) from err

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._writer, self._sessions.begin() as session:
            yield session

    @contextmanager
    def _core(self) -> Iterator[Connection]:
        """A transaction without the ORM, for the statements every attempt runs.

        The ORM's unit of work and identity map cost several milliseconds of CPU per
        attempt (profiled with the drain benchmark), for single-row statements that
        need neither.
        """
        with self._writer, self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self) -> str:
        """Apply every migration; returns the revision now current."""
        from alembic import command

        self._retrying(lambda: command.upgrade(self._alembic_config(), "head"))
        return self.current_revision() or "(none)"

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        def read() -> str | None:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()

        return self._retrying(read)

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def ensure_schema(self, *, auto_upgrade: bool) -> None:
        """Check the schema is current; upgrade it when allowed.

        An empty database is always initialised (nothing can be lost); migrating a
        shared Postgres between revisions is left to an explicit `db upgrade`.
        """
        current = self.current_revision()
        if current == self.head_revision():
            return
        if auto_upgrade or current is None:
            self.upgrade()
            return
        raise DatabaseUnavailable(
            f"database {self.masked_url()} is at revision {current or 'empty'}, "
            f"expected {self.head_revision()}: run `batchdrain db upgrade`"
        )

    def ping(self) -> None:
        def run() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        self._retrying(run)

    # -- backlog input ------------------------------------------------------------
    def enqueue(self, phases: list[NewPhase]) -> int:
        """Insert phases, all or nothing; a duplicate names its (run, phase) and row."""
        for index, phase in enumerate(phases, start=1):
            for label, value in (("run id", phase.run_id), ("phase id", phase.phase_id)):
                if not value or not value.strip():
                    raise BadInput(f"row {index}: {label} is empty")
                if len(value) > MAX_ID:
                    raise BadInput(f"row {index}: {label} is {len(value)} chars, at most {MAX_ID}")
        seen: dict[tuple[str, str], int] = {}
        for index, phase in enumerate(phases, start=1):
            key = (phase.run_id, phase.phase_id)
            if key in seen:
                raise BadInput(f"row {index}: duplicate of row {seen[key]} (run {key[0]!r}, phase {key[1]!r})")
            seen[key] = index

        def run() -> int:
            now = utcnow()
            with self._tx() as tx:
                existing = set(
                    tx.execute(
                        select(PhaseRow.run_id, PhaseRow.phase_id).where(
                            PhaseRow.run_id.in_({p.run_id for p in phases})
                        )
                    ).all()
                )
                for index, phase in enumerate(phases, start=1):
                    if (phase.run_id, phase.phase_id) in existing:
                        raise BadInput(
                            f"row {index}: phase {phase.phase_id!r} of run {phase.run_id!r} "
                            "is already in the backlog"
                        )
                runs = set(tx.scalars(select(RunRow.run_id).where(
                    RunRow.run_id.in_({p.run_id for p in phases}))))
                for run_id in sorted({p.run_id for p in phases} - runs):
                    tx.add(RunRow(run_id=run_id, created_at=now))
                tx.flush()
                for phase in phases:
                    tx.add(PhaseRow(
                        run_id=phase.run_id, phase_id=phase.phase_id, state=PhaseState.QUEUED.value,
                        spec=phase.spec.to_json(), attempts=0, retry_base=0, created_at=now,
                        updated_at=now,
                    ))
            return len(phases)

        try:
            return self._retrying(run)
        except IntegrityError as err:
            # A concurrent writer inserted the same phase between our check and insert.
            raise BadInput(f"duplicate phase: {self._clean(err)}") from err

    # -- reading the backlog ----------------------------------------------------
    @staticmethod
    def _phase(row: PhaseRow | Row[Any]) -> Phase:
        return Phase(
            run_id=row.run_id, phase_id=row.phase_id, state=PhaseState(row.state),
            attempts=row.attempts, spec=PhaseSpec.from_json(row.spec), created_seq=row.id,
            retry_base=row.retry_base,
            last_failure_class=row.last_failure_class, last_failure_reason=row.last_failure_reason,
            parked_reason=row.parked_reason, lease_owner=row.lease_owner,
        )

    def known_runs(self) -> set[str]:
        def run() -> set[str]:
            with self._tx() as tx:
                return set(tx.scalars(select(RunRow.run_id)))

        return self._retrying(run)

    def phases(self, run_ids: Iterable[str] | None = None) -> list[Phase]:
        wanted = list(run_ids) if run_ids is not None else None

        def run() -> list[Phase]:
            with self._tx() as tx:
                query = select(PhaseRow).order_by(PhaseRow.id)
                if wanted:
                    query = query.where(PhaseRow.run_id.in_(wanted))
                return [self._phase(row) for row in tx.scalars(query)]

        return self._retrying(run)

    @staticmethod
    def _candidate_scope(run_ids: list[str], exclude_session: str | None) -> list[ColumnElement[bool]]:
        scope: list[ColumnElement[bool]] = [PhaseRow.run_id.in_(run_ids)] if run_ids else []
        if exclude_session is not None:
            # Probes ix_attempts_session_phase (migration 0004) once per candidate.
            scope.append(~exists().where(
                AttemptRow.session_id == exclude_session, AttemptRow.run_id == PhaseRow.run_id,
                AttemptRow.phase_id == PhaseRow.phase_id))
        return scope

    @classmethod
    def _candidates_query(cls, *, run_ids: list[str], limit: int, max_attempts: int,
                          exclude_session: str | None) -> Select[PhaseRow]:
        """The queued candidates, oldest first (the first of ``candidates``' two queries)."""
        budget = PhaseRow.attempts - PhaseRow.retry_base < max_attempts
        return (select(PhaseRow)
                .where(PhaseRow.state == PhaseState.QUEUED.value, budget,
                       *cls._candidate_scope(run_ids, exclude_session))
                .order_by(PhaseRow.id).limit(limit))

    def candidates(self, *, run_ids: list[str], limit: int, max_attempts: int, skip_runs_with_queued: bool,
                   include_parked: bool, exclude_session: str | None = None) -> list[Phase]:
        """The phases selection may pick, filtered and ordered in SQL: at most ``limit`` queued
        phases and ``limit`` retries, so a session's cost does not grow with the backlog.

        Mirrors ``selection.plan``'s rules (which then runs on this subset); indexes
        ``ix_phases_state_id`` and ``ix_phases_run_state`` keep both queries short.
        """

        def run() -> list[Phase]:
            with self._tx() as tx:
                scope = self._candidate_scope(run_ids, exclude_session)
                budget = PhaseRow.attempts - PhaseRow.retry_base < max_attempts
                queued = tx.scalars(self._candidates_query(
                    run_ids=run_ids, limit=limit, max_attempts=max_attempts, exclude_session=exclude_session)).all()
                if len(queued) >= limit:
                    # Queued phases come first and already fill the page: no retry could
                    # be picked, so skip the costlier retry query (it scans every FAILED row).
                    return [self._phase(row) for row in queued]
                states = [PhaseState.FAILED.value] + ([PhaseState.SKIPPED.value] if include_parked else [])
                retry_filter = [PhaseRow.state.in_(states), budget, *scope]
                if skip_runs_with_queued:
                    # NOT EXISTS probes ix_phases_run_state per candidate run, instead of
                    # materialising every queued phase's run id (NOT IN).
                    queued_phase = aliased(PhaseRow)
                    retry_filter.append(~exists().where(queued_phase.run_id == PhaseRow.run_id,
                                                        queued_phase.state == PhaseState.QUEUED.value))
                retries = tx.scalars(
                    select(PhaseRow).where(*retry_filter)
                    .order_by(PhaseRow.attempts - PhaseRow.retry_base, PhaseRow.id).limit(limit)).all()
                return [self._phase(row) for row in [*queued, *retries]]

        return self._retrying(run)

    def run_counts(self, run_ids: Iterable[str] | None = None) -> dict[str, RunCounts]:
        wanted = list(run_ids) if run_ids is not None else None

        def run() -> dict[str, RunCounts]:
            with self._tx() as tx:
                query = select(PhaseRow.run_id, PhaseRow.state, func.count()).group_by(
                    PhaseRow.run_id, PhaseRow.state
                )
                if wanted is not None:
                    query = query.where(PhaseRow.run_id.in_(wanted))
                per_run: dict[str, dict[str, int]] = {}
                for run_id, state, count in tx.execute(query).all():
                    per_run.setdefault(run_id, {})[state.lower()] = count
                return {run_id: RunCounts(**counts) for run_id, counts in sorted(per_run.items())}

        return self._retrying(run)

    def attempt_history(self, run_id: str, phase_id: str, limit: int) -> list[AttemptHistoryItem]:
        """Latest finished attempts first."""

        def run() -> list[AttemptHistoryItem]:
            with self._tx() as tx:
                rows = tx.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.run_id == run_id, AttemptRow.phase_id == phase_id,
                           AttemptRow.status == "finished")
                    .order_by(AttemptRow.attempt.desc())
                    .limit(limit)
                )
                return [
                    AttemptHistoryItem(FailureClass(r.failure_class or "api_error"), r.exit_code,
                                       r.first_error_line)
                    for r in rows
                ]

        return self._retrying(run)

    # -- sessions -------------------------------------------------------------------
    def create_session(self, *, executor: str, settings: dict[str, Any],
                       identity: dict[str, Any]) -> str:
        """Insert a session row; the id gets a random suffix if the second is taken."""
        now = utcnow()
        base = now.strftime("batch-drain-%Y%m%d-%H%M%S")

        def run(session_id: str) -> str:
            with self._tx() as tx:
                tx.add(SessionRow(
                    session_id=session_id, status="running", executor=executor, started_at=now,
                    heartbeat_at=now, settings=settings, identity=identity,
                ))
            return session_id

        candidates = [base] + [f"{base}-{secrets.token_hex(2)}" for _ in range(4)]
        for candidate in candidates:
            try:
                return self._retrying(functools.partial(run, candidate))
            except IntegrityError:
                continue
        raise DatabaseUnavailable("could not allocate a unique session id")

    def set_session_identity(self, session_id: str, identity: dict[str, Any]) -> None:
        def run() -> None:
            with self._tx() as tx:
                tx.execute(update(SessionRow).where(SessionRow.session_id == session_id)
                           .values(identity=identity))

        self._retrying(run)

    def heartbeat(self, session_id: str, lease_seconds: float) -> None:
        """Prove the session is alive and extend the leases of the phases it holds."""
        now = utcnow()

        def run() -> None:
            with self._tx() as tx:
                tx.execute(update(SessionRow).where(SessionRow.session_id == session_id)
                           .values(heartbeat_at=now))
                tx.execute(update(PhaseRow).where(PhaseRow.lease_owner == session_id)
                           .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds)))

        self._retrying(run)

    def end_session(self, session_id: str, *, status: str, counts: dict[str, Any],
                    report: dict[str, Any] | None, error: str | None = None) -> None:
        def run() -> None:
            with self._tx() as tx:
                tx.execute(update(SessionRow).where(SessionRow.session_id == session_id).values(
                    status=status, ended_at=utcnow(), counts=counts, report=report,
                    error=mask_secrets(error, [self._secret or ""]) if error else None,
                ))

        self._retrying(run)

    def sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self._tx() as tx:
                rows = tx.scalars(select(SessionRow).order_by(SessionRow.started_at.desc()).limit(limit))
                return [_session_dict(r) for r in rows]

        return self._retrying(run)

    def session(self, session_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any] | None:
            with self._tx() as tx:
                row = tx.get(SessionRow, session_id)
                return _session_dict(row) if row else None

        found = self._retrying(run)
        if found is None:
            raise BadInput(f"unknown session {session_id!r} (see `batchdrain sessions list`)")
        return found

    # -- attempts -----------------------------------------------------------------
    def claim(self, phase: Phase, *, session_id: str, lease_seconds: float, executor: str,
              command: list[str], image: str | None, identity: dict[str, Any]) -> Claim | None:
        """Take a phase for this session and open its attempt row; None if someone else has it."""
        now = utcnow()
        tries = 0

        def run() -> Claim | None:
            nonlocal tries
            tries += 1
            with self._core() as conn:
                if tries > 1:
                    # The connection may have died after our commit but before its reply
                    # (database restart): then the claim is ours already. A session claims
                    # a phase at most once, so its running attempt of the phase is that claim.
                    mine = conn.execute(_MY_RUNNING_ATTEMPT, {
                        "session_id": session_id, "key_run_id": phase.run_id, "key_phase_id": phase.phase_id,
                    }).first()
                    if mine is not None:
                        return Claim(mine.id, mine.attempt, phase)
                row = conn.execute(_CLAIM_PHASE, {
                    "key_run_id": phase.run_id, "key_phase_id": phase.phase_id, "from_state": phase.state.value,
                    "session_id": session_id, "now": now,
                    "lease_expires_at": now + dt.timedelta(seconds=lease_seconds),
                }).first()
                if row is None:
                    return None
                attempt_id = conn.execute(_OPEN_ATTEMPT, {
                    "session_id": session_id, "run_id": phase.run_id, "phase_id": phase.phase_id,
                    "attempt": row.attempts, "status": "running", "executor": executor,
                    "command": command, "image": image, "created_at": now,
                    "identity": {**identity, "attempt": row.attempts},
                }).scalar_one()
                return Claim(attempt_id, row.attempts, self._phase(row))

        return self._retrying(run)

    def update_attempt(self, attempt_pk: int, progress: AttemptProgress) -> None:
        fields: dict[str, Any] = {
            name: value for name in ("job_name", "namespace", "pod_uid", "node", "started_at")
            if (value := getattr(progress, name)) is not None
        }
        if progress.pod_name is not None:  # executors report one pod at a time
            fields["pod_names"] = [progress.pod_name]
        if progress.pid is not None or progress.host is not None:
            fields["raw_status"] = {"pid": progress.pid, "host": progress.host}
        if not fields:
            return

        def run() -> None:
            with self._core() as conn:
                conn.execute(_UPDATE_ATTEMPT, {**fields, "attempt_pk": attempt_pk})

        self._retrying(run)

    def finish_attempt(self, attempt_pk: int, result: AttemptResult, *, phase_state: PhaseState,
                       parked_reason: str | None) -> None:
        """Close the attempt row and release the phase, in one transaction."""
        now = utcnow()
        message = mask_secrets(result.message, [self._secret or ""])
        values: dict[str, Any] = {
            "status": "finished", "failure_class": result.failure_class.value, "message": message,
            "exit_code": result.exit_code, "exit_code_reason": result.exit_code_reason,
            "finished_at": result.finished_at or now, "container_seconds": result.container_seconds,
            "total_seconds": result.total_seconds, "first_error_line": result.first_error_line,
            "log_mode": result.log_mode.value, "logs": _pointer_rows(result.logs),
        }
        # What the result does not know (an adopted attempt, a launch that failed early)
        # keeps what the running attempt already recorded.
        for name in ("started_at", "job_name", "pod_uid", "node", "image", "image_digest"):
            value = getattr(result, name)
            if value is not None:
                values[name] = value
        if result.pod_names:
            values["pod_names"] = list(result.pod_names)
        failed = not result.succeeded

        def run() -> None:
            with self._core() as conn:
                row = conn.execute(_ATTEMPT_OF_PHASE, {"attempt_pk": attempt_pk}).first()
                if row is None:
                    raise DatabaseUnavailable(f"attempt {attempt_pk} vanished from the database")
                merged = dict(values)
                if result.raw_status is not None:  # merged: an adopted attempt keeps its history
                    merged["raw_status"] = {**(row.raw_status or {}), **result.raw_status}
                conn.execute(_UPDATE_ATTEMPT, {**merged, "attempt_pk": attempt_pk})
                conn.execute(_RELEASE_PHASE, {
                    "key_run_id": row.run_id, "key_phase_id": row.phase_id, "state": phase_state.value,
                    "lease_owner": None, "lease_expires_at": None, "updated_at": now,
                    "last_failure_class": result.failure_class.value if failed else None,
                    "last_failure_reason": message if failed else None, "parked_reason": parked_reason,
                })

        self._retrying(run)

    def interrupt_attempt(self, attempt_pk: int, result: AttemptResult) -> None:
        """Record what is known of an attempt left running (SIGTERM) but keep it open.

        The phase stays EXECUTING under this session's lease; once the lease expires the
        next session adopts the attempt and writes its real end over this interim record.
        """
        message = mask_secrets(result.message, [self._secret or ""])

        def run() -> None:
            with self._tx() as tx:
                row = _attempt_row(tx, attempt_pk)
                row.failure_class = result.failure_class.value
                row.message = message
                row.exit_code_reason = result.exit_code_reason
                row.log_mode = result.log_mode.value
                row.logs = _pointer_rows(result.logs)
                row.raw_status = {**(row.raw_status or {}), **(result.raw_status or {}),
                                  "interrupted_at": utcnow().isoformat()}

        self._retrying(run)

    def orphaned_attempts(self, *, lease_seconds: float) -> list[dict[str, Any]]:
        """Running attempts whose session stopped heart-beating for longer than a lease."""
        cutoff = utcnow() - dt.timedelta(seconds=lease_seconds)

        def run() -> list[dict[str, Any]]:
            with self._tx() as tx:
                rows = tx.execute(
                    select(AttemptRow, SessionRow.heartbeat_at)
                    .join(SessionRow, SessionRow.session_id == AttemptRow.session_id)
                    .where(AttemptRow.status == "running", SessionRow.heartbeat_at < cutoff)
                    .order_by(AttemptRow.id)
                ).all()
                return [{**_attempt_dict(a), "session_heartbeat_at": _aware(hb)} for a, hb in rows]

        return self._retrying(run)

    def take_over(self, attempt_pk: int, *, session_id: str, lease_seconds: float) -> bool:
        """Move an orphan's phase lease to this session; False if another session won it."""
        now = utcnow()

        def run() -> bool:
            with self._tx() as tx:
                attempt = tx.get(AttemptRow, attempt_pk)
                if attempt is None or attempt.status != "running":
                    return False
                result = tx.execute(
                    update(PhaseRow)
                    .where(PhaseRow.run_id == attempt.run_id, PhaseRow.phase_id == attempt.phase_id,
                           PhaseRow.state == PhaseState.EXECUTING.value,
                           or_(PhaseRow.lease_expires_at.is_(None), PhaseRow.lease_expires_at < now))
                    .values(lease_owner=session_id,
                            lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False)
                )
                return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return self._retrying(run)

    def attempts(self, *, session_id: str | None = None, run_id: str | None = None,
                 phase_id: str | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            # Plain rows, not ORM objects: a session's report reads back every attempt,
            # and the identity map roughly doubled the memory that took.
            with self._core() as conn:
                query = select(*AttemptRow.__table__.columns).order_by(AttemptRow.id)
                if session_id is not None:
                    query = query.where(AttemptRow.session_id == session_id)
                if run_id is not None:
                    query = query.where(AttemptRow.run_id == run_id)
                if phase_id is not None:
                    query = query.where(AttemptRow.phase_id == phase_id)
                return [_attempt_dict(r) for r in conn.execute(query)]

        return self._retrying(run)

    def retry_phases(self, *, run_ids: list[str], phase_ids: list[str], include_failed: bool) -> int:
        """Put parked (and optionally failed) phases back in the queue; attempt limits restart."""
        states = [PhaseState.SKIPPED.value] + ([PhaseState.FAILED.value] if include_failed else [])

        def run() -> int:
            with self._tx() as tx:
                query = update(PhaseRow).where(PhaseRow.state.in_(states))
                if run_ids:
                    query = query.where(PhaseRow.run_id.in_(run_ids))
                if phase_ids:
                    query = query.where(PhaseRow.phase_id.in_(phase_ids))
                result = tx.execute(query.values(
                    state=PhaseState.QUEUED.value, retry_base=PhaseRow.attempts, parked_reason=None,
                    updated_at=utcnow(),
                ).execution_options(synchronize_session=False))
                return int(result.rowcount)  # type: ignore[attr-defined]

        return self._retrying(run)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the CLI, reports) proceed while a drain writes. Autocommit at the
    # driver level so that _sqlite_begin_immediate decides how transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # One writer at a time, decided at BEGIN: a deferred transaction that reads and then
    # writes can fail with SQLITE_BUSY without waiting, while BEGIN IMMEDIATE waits
    # (busy timeout) for the lock. This is what makes claims safe between controllers.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _session_dict(row: SessionRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id, "status": row.status, "executor": row.executor,
        "started_at": _aware(row.started_at), "ended_at": _aware(row.ended_at),
        "heartbeat_at": _aware(row.heartbeat_at), "settings": row.settings,
        "identity": row.identity, "counts": row.counts, "report": row.report, "error": row.error,
    }


def _attempt_dict(row: AttemptRow | Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "session_id": row.session_id, "run_id": row.run_id, "phase_id": row.phase_id,
        "attempt": row.attempt, "status": row.status, "executor": row.executor,
        "command": row.command, "image": row.image, "image_digest": row.image_digest,
        "job_name": row.job_name, "namespace": row.namespace, "pod_names": row.pod_names or [], "pod_uid": row.pod_uid,
        "node": row.node, "exit_code": row.exit_code, "exit_code_reason": row.exit_code_reason,
        "created_at": _aware(row.created_at), "started_at": _aware(row.started_at),
        "finished_at": _aware(row.finished_at), "container_seconds": row.container_seconds,
        "total_seconds": row.total_seconds, "failure_class": row.failure_class,
        "message": row.message, "first_error_line": row.first_error_line,
        "log_mode": row.log_mode, "logs": row.logs or [], "identity": row.identity,
        "raw_status": row.raw_status,
    }
