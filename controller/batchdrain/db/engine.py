"""The connection to the database: URL, engine and pool, transactions and the one retry policy.

Everything the concern modules (``backlog``, ``sessions``, ``attempts``, ``schema``)
run goes through ``DatabaseEngine.retrying`` inside ``tx`` or ``core``, so the rules
that keep a drain alive through lock contention and a server restart live here once:
which errors are transient, how long to keep trying, and how SQLite's single writer
is queued for inside one process.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar, overload

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_random_exponential,
)

from batchdrain.db.watchdog import Watchdog, watch_connections
from batchdrain.domain import BadInput
from batchdrain.identity import mask_secrets, mask_url, url_password

T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or used; the message is safe to print."""


class DatabaseFull(DatabaseUnavailable):
    """The database refused a write for want of space (SQLite's SQLITE_FULL, Postgres 53100)."""


# libpq connection options for a Postgres server that goes silent. connect_timeout
# bounds connecting (TCP, TLS, startup, authentication). Keepalive probes after 10 s
# idle, every 5 s, three unanswered: a dead peer is dropped ~25 s into idleness;
# tcp_user_timeout drops a connection whose sent data stays unacknowledged 30 s.
# Both need the peer's kernel to stop answering; a proxy in between answers for it,
# which the watchdog (``watchdog``) covers.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
    "keepalives_count": 3, "tcp_user_timeout": 30_000,
}


def _is_full(err: BaseException) -> bool:
    orig = getattr(err, "orig", None)
    if getattr(orig, "sqlstate", None) == "53100":  # Postgres disk_full
        return True
    message = str(orig or err).lower()
    return "database or disk is full" in message or "no space left on device" in message


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


@overload
def aware(value: dt.datetime) -> dt.datetime: ...


@overload
def aware(value: dt.datetime | None) -> dt.datetime | None: ...


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read back from the database, always with its zone."""
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


class DatabaseEngine:
    """One database URL's engine, its transactions and its retry policy."""

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
            # No pool_pre_ping: the ping is ours, at checkout, so that the watchdog bounds it.
            kwargs["connect_args"] = dict(POSTGRES_CONNECT_ARGS)
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except ImportError as err:
            # psycopg is a dependency of batchdrain: only a broken install lacks it.
            raise BadInput(f"cannot use database URL {mask_url(url)!r}: the {self.backend} driver "
                           f"{err.name or 'psycopg'} is not installed: pip install 'psycopg[binary]' "
                           "(or reinstall batchdrain)") from err
        except (ArgumentError, NoSuchModuleError) as err:
            raise BadInput(f"cannot use database URL {mask_url(url)!r}: {self.clean(err)}") from err
        self._reached = False
        event.listen(self.engine, "connect", self._on_connect)
        self.watchdog = Watchdog()
        if self.backend == "postgresql":
            watch_connections(self.engine, self.watchdog)
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
        self._budget = threading.local()  # a longer bound for this thread's calls (``retry_budget``)

    def _on_connect(self, _dbapi_connection: Any, _record: Any) -> None:
        self._reached = True

    def clean(self, err: BaseException) -> str:
        """The first line of a driver error, with the URL's password masked."""
        first = str(getattr(err, "orig", None) or err).strip().splitlines()
        return self.mask(first[0] if first else type(err).__name__)

    def mask(self, message: str) -> str:
        """Free text (an error, an attempt's message) without this URL's password."""
        return mask_secrets(message, [self._secret or ""])

    def masked_url(self) -> str:
        return mask_url(self.url) or ""

    def _stop(self, state: RetryCallState) -> bool:
        """Lock contention gets ``retry_attempts`` tries; a lost server gets ``retry_max_seconds``.

        A Postgres restart refuses connections for seconds, which a count of quick
        tries used up in about one second, failing the session and leaving its
        running attempts open. Time is the bound that matches an outage. A server
        never reached is more likely a wrong URL than an outage: that fails fast.
        """
        if (state.seconds_since_start or 0.0) >= getattr(self._budget, "seconds", self._retry_max_seconds):
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None and self._reached and _is_connection_lost(error):
            return False
        return state.attempt_number >= self._retry_attempts

    @contextmanager
    def retry_budget(self, seconds: float) -> Iterator[None]:
        """This thread's calls inside the block wait up to ``seconds`` for a lost server.

        For a session that already halted on a lost database and still holds the ends
        of attempts it ran: they may be written as long as its lease keeps every other
        session off those phases, however long that is past ``retry_max_seconds``.
        """
        before = getattr(self._budget, "seconds", None)
        self._budget.seconds = seconds
        try:
            yield
        finally:
            if before is None:
                del self._budget.seconds
            else:
                self._budget.seconds = before

    def retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one whole transaction) again on transient errors, then give up loudly."""
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=self._stop,
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            reraise=True,
        )
        try:
            return retrying(fn)
        except (SAOperationalError, SATimeoutError) as err:
            if _is_full(err):
                raise DatabaseFull(f"database full: {self.masked_url()}: {self.clean(err)}") from err
            raise DatabaseUnavailable(
                f"database {self.masked_url()} unavailable: {self.clean(err)}"
            ) from err

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """An ORM transaction, committed on leaving the block."""
        with self._writer, self._sessions.begin() as session:
            yield session

    @contextmanager
    def core(self) -> Iterator[Connection]:
        """A transaction without the ORM, for the statements every attempt runs.

        The ORM's unit of work and identity map cost several milliseconds of CPU per
        attempt (profiled with the drain benchmark), for single-row statements that
        need neither.
        """
        with self._writer, self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        def run() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        self.retrying(run)

    def dispose(self) -> None:
        self.watchdog.close()
        self.engine.dispose()


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
