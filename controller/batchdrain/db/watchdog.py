"""Noticing a silent database server: a connection that waits past a bound is shut down.

A Postgres connection whose peer goes silent (packets dropped, a proxy or a NAT that
stopped forwarding, nothing closed) blocks libpq for ever: it has no read timeout,
``statement_timeout`` is enforced by the server that no longer hears us, and TCP
keepalive or ``tcp_user_timeout`` only help when the kernel on the other end stops
answering too (a proxy or a load balancer in between keeps acknowledging). So every
call on a connection is armed here: a ping at checkout, each statement, each commit
or rollback. A connection still inside one call ``silent_seconds`` later has its
socket shut down, which wakes libpq with "server closed the connection", an error
the engine's retry policy already treats as a lost connection (a new connection,
the whole transaction again).

The bound is ``SILENT_SECONDS``: no statement batchdrain runs during a drain takes
seconds (they are single-row writes and indexed reads, paged), so a call that heard
nothing for that long is a silent peer, not a slow query. Migrations can legitimately
run longer (an index built over a large table): they run ``unwatched``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

SILENT_SECONDS = 30.0
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Silence:
    """One connection the watchdog shut down: when, and how long its call had waited."""

    at: float  # time.time()
    waited_seconds: float
    during: str

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.gmtime(self.at))
        return (f"database connection silent for {self.waited_seconds:.1f}s during {self.during} "
                f"(bound {SILENT_SECONDS:g}s): shut down at {when}Z, reconnecting")


class Watchdog:
    """Connections inside a call, with when the call began; one thread shuts down the silent ones."""

    def __init__(self, *, silent_seconds: float = SILENT_SECONDS, tick_seconds: float = TICK_SECONDS) -> None:
        self.silent_seconds = silent_seconds
        self._tick = tick_seconds
        self._lock = threading.Lock()
        # id(dbapi connection) -> (connection, monotonic start, what it is doing)
        self._armed: dict[int, tuple[Any, float, str]] = {}
        self._local = threading.local()
        self._silences: list[Silence] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- arming -------------------------------------------------------------------
    def arm(self, dbapi_connection: Any, during: str) -> None:
        if getattr(self._local, "unwatched", False):
            return
        with self._lock:
            self._armed[id(dbapi_connection)] = (dbapi_connection, time.monotonic(), during)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._armed.pop(id(dbapi_connection), None)

    @contextmanager
    def unwatched(self) -> Iterator[None]:
        """Calls made by this thread inside the block are not bounded (migrations)."""
        before = getattr(self._local, "unwatched", False)
        self._local.unwatched = True
        try:
            yield
        finally:
            self._local.unwatched = before

    def silences(self) -> list[Silence]:
        """Every connection shut down so far, oldest first."""
        with self._lock:
            return list(self._silences)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- the thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self.check(time.monotonic())

    def check(self, now: float) -> list[Silence]:
        """Shut down every connection whose call began more than ``silent_seconds`` before ``now``."""
        with self._lock:
            due = [(key, entry) for key, entry in self._armed.items() if now - entry[1] >= self.silent_seconds]
            for key, _entry in due:
                del self._armed[key]
        found = []
        for _key, (connection, started, during) in due:
            if _shut_down(connection):
                found.append(Silence(at=time.time(), waited_seconds=now - started, during=during))
        with self._lock:
            self._silences.extend(found)
        return found


def _shut_down(connection: Any) -> bool:
    """Shut the connection's socket down in both directions; False if it is already closed.

    The connection is inside a call on another thread, so it cannot be closed (and its
    descriptor reused) under us; the duplicate made by ``fromfd`` is closed at once,
    the shutdown reaches the one socket both descriptors name.
    """
    if getattr(connection, "closed", True):
        return False
    with socket.fromfd(connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # ENOTCONN: the peer's close got there first
            return False
    return True


def watch_connections(engine: Engine, watchdog: Watchdog) -> None:
    """Arm ``watchdog`` around every call ``engine``'s connections make, and ping at checkout."""
    _Listeners(engine, watchdog).listen()


class _Listeners:
    """The engine and pool events that arm and disarm the watchdog.

    SQLAlchemy's own ``pool_pre_ping`` runs before any event could arm it, so the ping
    is done here instead: a failed ping discards the connection and the pool connects
    afresh, as ``pool_pre_ping`` would. A new connection is not pinged (it just spoke).
    """

    def __init__(self, engine: Engine, watchdog: Watchdog) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._watchdog = watchdog

    def listen(self) -> None:
        listeners: dict[str, Any] = {
            "connect": self.connected, "checkout": self.checkout, "before_cursor_execute": self.statement,
            "after_cursor_execute": self.statement_done, "commit": self.ending, "rollback": self.ending,
            "reset": self.resetting, "handle_error": self.failed,
            **dict.fromkeys(("checkin", "close", "invalidate", "soft_invalidate", "detach"), self.released),
        }
        for name, listener in listeners.items():
            event.listen(self._engine, name, listener)

    def connected(self, _dbapi_connection: Any, record: Any) -> None:
        record.info["batchdrain_fresh"] = True

    def checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("batchdrain_fresh", False):
            return
        self._watchdog.arm(dbapi_connection, "the ping at checkout")
        try:
            self._dialect.do_ping(dbapi_connection)
        except self._dialect.loaded_dbapi.Error as err:
            raise DisconnectionError(f"ping at checkout failed: {err}") from err
        finally:
            self._watchdog.disarm(dbapi_connection)

    def statement(self, conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        verb = statement.split(None, 1)[0] if statement.strip() else "?"
        self._watchdog.arm(conn.connection.dbapi_connection, f"a statement ({verb})")

    def statement_done(self, conn: Any, *_rest: Any) -> None:
        self._watchdog.disarm(conn.connection.dbapi_connection)

    def ending(self, conn: Any) -> None:
        self._watchdog.arm(conn.connection.dbapi_connection, "a commit or rollback")

    def resetting(self, dbapi_connection: Any, *_rest: Any) -> None:
        self._watchdog.arm(dbapi_connection, "the rollback on return to the pool")

    def released(self, dbapi_connection: Any, *_rest: Any) -> None:
        if dbapi_connection is not None:
            self._watchdog.disarm(dbapi_connection)

    def failed(self, context: Any) -> None:
        conn = context.connection
        if conn is not None and not conn.invalidated:
            self._watchdog.disarm(conn.connection.dbapi_connection)
