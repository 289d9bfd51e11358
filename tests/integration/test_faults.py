"""Faults of the platform under a running drain: Postgres restarted, log volume full.

Each test drives the real controller in its own process (so stderr can be checked for
tracebacks) against a dedicated fault target: a Postgres server of its own, which is
restarted mid-drain, or a small tmpfs as the log store, which is filled mid-drain.
Afterwards the records are audited the way the chaos harness audits them.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchdrain.domain import PhaseState
from tests.integration.helpers import attempts, cli, controller_process, phases
from tests.pgserver import PostgresServer, start_postgres

DEADLINE = 240


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def enqueue_phases(capsys: pytest.CaptureFixture[str], workdir: Path, database_url: str, *, count: int,
                   script: str) -> None:
    rows = "\n".join(
        f"- {{run_id: fault-{i % 3}, phase_id: p{i:03d}, command: [python3, -c, {script!r}]}}"
        for i in range(count))
    (workdir / "backlog.yaml").write_text(rows + "\n")
    code, _out, err = cli(capsys, "import", str(workdir / "backlog.yaml"), "--database-url", database_url)
    assert code == 0, err


def audit(database_url: str) -> tuple[dict[tuple[str, str], Any], list[dict[str, Any]]]:
    """The invariants every fault must keep; returns phases and attempts for more checks."""
    rows = attempts(database_url)
    state = phases(database_url)
    for row in rows:
        assert row.status == "finished", f"attempt left open: {row}"
        assert row.exit_code is not None or row.exit_code_reason, f"unexplained null exit: {row}"
    by_phase: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_phase.setdefault((row.run_id, row.phase_id), []).append(row)
    for key, tried in by_phase.items():
        assert len({a.attempt for a in tried}) == len(tried), f"attempt number used twice: {key}"
        spans = sorted((a.created_at, a.finished_at) for a in tried)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two attempts of {key} overlap"
    for key, phase in state.items():
        if phase.state is PhaseState.QUEUED:
            assert key not in by_phase, f"{key} is queued but has attempts"
        else:
            assert phase.state in (PhaseState.COMPLETE, PhaseState.FAILED), f"{key} left {phase.state}"
            assert key in by_phase, f"{key} is {phase.state} without an attempt"
    return state, rows


def assert_clean_stderr(err: str) -> None:
    assert "Traceback" not in err, err
    assert "controller error" not in err, err


# -- Postgres restarted mid-drain ---------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: restarting it must not disturb the shared one."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("down_seconds", [0.0, 7.0], ids=["fast-restart", "down-7s"])
def test_postgres_restart_mid_drain(own_postgres: PostgresServer, workdir: Path,
                                    capsys: pytest.CaptureFixture[str], down_seconds: float) -> None:
    url = own_postgres.url
    started = workdir / "started"
    started.mkdir()
    script = (f"import os, pathlib, time; pathlib.Path('{started}', os.environ['BATCHDRAIN_PHASE_ID']).touch(); "
              "print('working', flush=True); time.sleep(0.4); print('done')")
    enqueue_phases(capsys, workdir, url, count=40, script=script)
    proc = controller_process("drain", "--database-url", url, "--parallelism", "5", "--executor", "local",
                              "--quiet", "--lease-seconds", "30", cwd=workdir)
    try:
        wait_for(lambda: len(list(started.iterdir())) >= 8, "eight phases to start")
        own_postgres.restart(down_seconds=down_seconds)
        at_restart = len(list(started.iterdir()))
        assert proc.poll() is None, "the drain ended before the database came back"
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert at_restart < 40, "every phase had started before the restart: the fault hit nothing"
    assert proc.returncode == 0, err
    state, rows = audit(url)
    assert all(p.state is PhaseState.COMPLETE for p in state.values()), \
        {k: p.state for k, p in state.items() if p.state is not PhaseState.COMPLETE}
    assert all(r.exit_code == 0 for r in rows)
    assert len(rows) == 40, "a phase ran twice"


# -- log volume full ------------------------------------------------------------------------------



@pytest.fixture
def small_log_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs as the log store, so it can really run out of space (needs root)."""
    volume = tmp_path / "logs"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(volume)], check=True,
                   capture_output=True)
    try:
        yield volume
    finally:
        if subprocess.run(["umount", str(volume)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(volume)], check=True, capture_output=True)


def fill(volume: Path) -> Path:
    """Write a filler file until the volume refuses more (ENOSPC)."""
    filler = volume / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as err:
            assert err.errno == 28, err  # ENOSPC: exactly the fault under test
    return filler


def stored_logs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pointer, checked: size and sha256 recorded are those of the bytes on disk."""
    pointers = [p for row in rows for p in row.logs]
    for pointer in pointers:
        data = Path(pointer.url).read_bytes()
        assert len(data) == pointer.size_bytes, pointer
        assert hashlib.sha256(data).hexdigest() == pointer.sha256, pointer
    return pointers


CHATTY = ("import time\nfor i in range(40):\n    print('x' * 1000, i, flush=True)\n    time.sleep(0.05)\n"
          "print('last line', flush=True)")


def test_log_volume_full_for_a_while_loses_nothing(small_log_volume: Path, workdir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{workdir / 'backlog.db'}"
    enqueue_phases(capsys, workdir, url, count=12, script=CHATTY)
    proc = controller_process("drain", "--database-url", url, "--log-store", str(small_log_volume),
                              "--parallelism", "4", "--executor", "local", "--quiet", cwd=workdir)
    try:
        wait_for(lambda: any(small_log_volume.rglob("*.stdout.log")), "the first log to be written")
        filler = fill(small_log_volume)
        time.sleep(4)
        assert proc.poll() is None, "the drain ended while the log volume was full"
        filler.unlink()
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 0, err
    state, rows = audit(url)
    assert all(p.state is PhaseState.COMPLETE for p in state.values())
    assert len(rows) == 12
    pointers = stored_logs(rows)
    assert all(p.incomplete is None for p in pointers)
    assert any(p.stalled_seconds > 0 for p in pointers), "no write waited: the volume never filled up"
    for pointer in pointers:
        if pointer.stream == "stdout":
            assert Path(pointer.url).read_bytes().endswith(b"last line\n"), pointer


def test_log_volume_full_for_good_stops_the_session(small_log_volume: Path, workdir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{workdir / 'backlog.db'}"
    enqueue_phases(capsys, workdir, url, count=20, script=CHATTY)
    proc = controller_process("drain", "--database-url", url, "--log-store", str(small_log_volume),
                              "--parallelism", "2", "--executor", "local", "--quiet",
                              "--log-write-retry-seconds", "2", cwd=workdir)
    try:
        wait_for(lambda: any(small_log_volume.rglob("*.stdout.log")), "the first log to be written")
        fill(small_log_volume)
        _out, err_bytes = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    err = err_bytes.decode()
    assert_clean_stderr(err)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "log store" in errors[0] and "No space left on device" in errors[0], err
    state, rows = audit(url)
    assert any(p.state is PhaseState.QUEUED for p in state.values()), "the session did not stop selecting"
    assert all(r.exit_code == 0 for r in rows), "the real outcome was not recorded"
    pointers = stored_logs(rows)
    cut = [r for r in rows if any(p.incomplete for p in r.logs)]
    assert cut, "no log was marked incomplete"
    for row in cut:
        assert "log incomplete: No space left on device (ENOSPC)" in row.message, row.message
        assert "bytes stored" in row.message
    assert not list(small_log_volume.rglob("*.tmp")), "a half-written file was left behind"
    assert len(pointers) == 2 * len(rows)
