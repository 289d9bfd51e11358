"""Database faults under a running drain, round two: silent, gone past the retry bound, full.

Each drives the real controller in its own process (local executor) against a fault
target of its own: a Postgres behind a Toxiproxy that is black-holed (bytes dropped,
nothing closed), a Postgres stopped for longer than ``--retry-max-seconds``, and a
database whose disk fills up (SQLite on a small tmpfs, Postgres with its tablespace
on one). Afterwards the records are audited as ``test_faults`` audits them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from batchdrain.db import AttemptRecord, Database, SessionRecord
from batchdrain.domain import PhaseState
from tests.integration.helpers import attempts, controller_process, phases
from tests.integration.test_faults import assert_clean_stderr, audit, enqueue_phases, fill, stored_logs, wait_for
from tests.pgserver import PostgresServer, start_postgres
from tests.toxiproxy import Toxiproxy

DEADLINE = 400
BLACKHOLE_SECONDS = 60.0
OUTAGE_SECONDS = 60.0


def sessions(url: str) -> list[SessionRecord]:
    db = Database(url)
    try:
        return db.sessions()
    finally:
        db.dispose()


def report_notes(url: str, session_id: str) -> list[str]:
    db = Database(url)
    try:
        return list(db.report_value(session_id, "notes") or [])
    finally:
        db.dispose()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line]


def phase_script(started: Path, seconds: float) -> str:
    return (f"import os, pathlib, time; pathlib.Path('{started}', os.environ['BATCHDRAIN_PHASE_ID']).touch(); "
            f"print('working', flush=True); time.sleep({seconds}); print('done')")


def assert_logs_whole(rows: list[AttemptRecord]) -> None:
    for pointer in stored_logs(rows):
        if pointer.stream == "stdout":
            assert Path(pointer.url).read_bytes().endswith(b"working\ndone\n"), pointer


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def toxiproxy(tmp_path: Path) -> Iterator[Toxiproxy]:
    proxy = Toxiproxy(tmp_path)
    try:
        yield proxy
    finally:
        proxy.close()


# -- 1. Postgres black-holed for 60 s --------------------------------------------------------------


def test_postgres_silent_for_60s_is_noticed_and_survived(own_postgres: PostgresServer, toxiproxy: Toxiproxy,
                                                         workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = toxiproxy.proxy("postgres", f"127.0.0.1:{own_postgres.port}")
    direct = own_postgres.url
    through = f"postgresql://postgres@{proxy.address}/postgres"
    started = workdir / "started"
    started.mkdir()
    enqueue_phases(capsys, workdir, direct, count=30, script=phase_script(started, 1.0))
    # The retry bound outlasts the silence: this test is about noticing it and
    # resuming (a database lost past the bound is the next test's).
    proc = controller_process("drain", "--database-url", through, "--parallelism", "4", "--executor", "local",
                              "--quiet", "--retry-max-seconds", "180", cwd=workdir)
    try:
        wait_for(lambda: len(list(started.iterdir())) >= 6, "six phases to start")
        held = proxy.client_sockets()
        assert held, "the controller holds no connection through the proxy"
        silenced = time.monotonic()
        proxy.blackhole()
        # Healing closes what the toxic held, which a controller would notice without
        # any bound of its own: so heal only once it gave up on a silent connection.
        wait_for(lambda: bool(held - proxy.client_sockets()), "the controller to drop a silent connection",
                 timeout=300)
        noticed = time.monotonic() - silenced
        assert proc.poll() is None, "the drain ended during the silence"
        time.sleep(max(0.0, silenced + BLACKHOLE_SECONDS - time.monotonic()))
        proxy.heal()
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 0, err
    state, rows = audit(direct)
    assert all(p.state is PhaseState.COMPLETE for p in state.values())
    assert len(rows) == 30, "a phase ran twice"
    assert all(r.exit_code == 0 for r in rows)
    assert_logs_whole(rows)
    (session,) = sessions(direct)
    assert session.status == "complete", session
    silences = [n for n in report_notes(direct, session.session_id) if "database connection silent" in n]
    assert silences, "the watchdog shut nothing down: the silence was noticed some other way"
    waited = [float(m.group(1)) for n in silences if (m := re.search(r"silent for ([\d.]+)s", n))]
    print(f"\nFIGURE database: first silent connection dropped {noticed:.1f}s after the black hole began; "
          f"the watchdog's own figures: {', '.join(f'{w:.1f}s' for w in waited)} ({len(silences)} connection(s))")


# -- 2. Postgres down for longer than --retry-max-seconds -----------------------------------------


def test_postgres_down_past_the_retry_bound_halts_and_loses_nothing(
        own_postgres: PostgresServer, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = own_postgres.url
    started = workdir / "started"
    started.mkdir()
    enqueue_phases(capsys, workdir, url, count=16, script=phase_script(started, 4.0))
    # Defaults: --retry-max-seconds 30, --lease-seconds 120; the outage lasts 60 s.
    proc = controller_process("drain", "--database-url", url, "--parallelism", "4", "--executor", "local",
                              "--quiet", cwd=workdir)
    try:
        wait_for(lambda: len(list(started.iterdir())) >= 4, "four phases to start")
        own_postgres.restart(down_seconds=OUTAGE_SECONDS)
        at_restart = len(list(started.iterdir()))
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 1, err
    errors = error_lines(err)
    assert len(errors) == 1 and "unavailable" in errors[0] and "stopped selecting phases" in errors[0], err
    assert at_restart < 16, "every phase had started before the outage: it hit nothing"
    state, rows = audit(url)  # nothing left open, nothing EXECUTING
    assert rows and all(r.exit_code == 0 for r in rows), "the real outcome of a phase was not recorded"
    assert any(p.state is PhaseState.QUEUED for p in state.values()), "the session did not stop selecting"
    (first,) = sessions(url)
    assert first.status == "failed" and first.error and "unavailable" in first.error, first

    proc = controller_process("drain", "--database-url", url, "--parallelism", "4", "--executor", "local",
                              "--quiet", cwd=workdir)
    _out, err_bytes = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err_bytes.decode()
    state, rows = audit(url)
    assert all(p.state is PhaseState.COMPLETE for p in state.values())
    assert len(rows) == 16, "a phase ran twice"
    assert_logs_whole(rows)


# -- 5. the database fills up -------------------------------------------------------------------------


@dataclass
class FullTarget:
    url: str
    volume: Path


def mount_tmpfs(path: Path, size: str, *, owner: str | None = None) -> None:
    options = f"size={size}"
    if owner is not None:
        ids = subprocess.run(["id", "-u", owner], check=True, capture_output=True, text=True).stdout.strip()
        gid = subprocess.run(["id", "-g", owner], check=True, capture_output=True, text=True).stdout.strip()
        options += f",uid={ids},gid={gid},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


@pytest.fixture(params=["sqlite", "postgres"])
def full_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullTarget]:
    """A database on a small tmpfs (needs root): SQLite's file, or a Postgres tablespace."""
    if request.param == "sqlite":
        volume = tmp_path / "db"
        volume.mkdir()
        mount_tmpfs(volume, "8m")
        try:
            yield FullTarget(f"sqlite:///{volume / 'backlog.db'}", volume)
        finally:
            unmount(volume)
        return
    server = start_postgres()
    # Not under pytest's tmp dir: its 0700 parents lock the postgres user out.
    parent = Path(tempfile.mkdtemp(prefix="batchdrain-ts-"))
    parent.chmod(0o755)
    volume = parent / "space"
    volume.mkdir()
    mount_tmpfs(volume, "16m", owner="postgres")
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE small LOCATION '{volume}'")
            conn.execute("CREATE DATABASE full_db TABLESPACE small")
        yield FullTarget(server.url.rpartition("/")[0] + "/full_db", volume)
    finally:
        server.stop()
        unmount(volume)
        shutil.rmtree(parent)


def test_database_full_mid_drain_halts_and_the_next_session_adopts(
        full_target: FullTarget, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = full_target.url
    started = workdir / "started"
    started.mkdir()
    enqueue_phases(capsys, workdir, url, count=40, script=phase_script(started, 0.5))
    drain = ("drain", "--database-url", url, "--parallelism", "3", "--executor", "local", "--quiet",
             "--lease-seconds", "20", "--log-store", str(workdir / "logs"))
    proc = controller_process(*drain, cwd=workdir)
    try:
        wait_for(lambda: len(list(started.iterdir())) >= 3, "three phases to start")
        filler = fill(full_target.volume)
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 1, err
    errors = error_lines(err)
    assert len(errors) == 1 and "database full" in errors[0], err
    print(f"\nFIRST SESSION: {errors[0]}")
    assert len(list(started.iterdir())) < 40, "every phase ran: the full database stopped nothing"
    filler.unlink()

    proc = controller_process(*drain, cwd=workdir)
    _out, err_bytes = proc.communicate(timeout=DEADLINE)
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 0, err
    state, rows = audit(url)  # nothing left open or EXECUTING: what the first held was adopted
    assert all(p.state in (PhaseState.COMPLETE, PhaseState.FAILED) for p in state.values()), \
        {k: p.state for k, p in state.items() if p.state not in (PhaseState.COMPLETE, PhaseState.FAILED)}
    for row in rows:
        assert row.exit_code == 0 or row.failure_class == "controller_interrupted", row
    first, second = sorted(sessions(url), key=lambda s: s.started_at)
    assert second.status == "complete", second
    assert first.status == "failed" and first.error, first
    assert "database full" in first.error or "closed by session " + second.session_id in first.error, first.error
    assert all(r.status == "finished" for r in attempts(url))
    assert not any(p.state is PhaseState.EXECUTING for p in phases(url).values())
