"""The log store's health is the controller's problem, never the phases'.

The three failures issue 17 found, each run through the real CLI: a ``--log-store``
the controller cannot write (three sessions used to burn the whole backlog), ``s3://``
without s3fs ("controller error: ImportError"), ``s3://`` with no reachable endpoint
(the session row stayed ``running``). Each is now one line, exit 2, nothing claimed.
And a store that fails *during* a session halts it: one line, exit 1, the session row
ended, no phase charged, parked or exhausted.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

from batchdrain.db import Database
from batchdrain.domain import PhaseState
from tests.integration.helpers import attempts, cli, phases
from tests.tcpproxy import CuttableProxy

ROWS = [{"run_id": "r", "phase_id": f"p{i}", "command": ["python3", "-c", f"print('phase {i}')"]}
        for i in range(4)]


def _backlog(workdir: Path, capsys, url: str, rows: list[dict] | None = None) -> None:
    path = workdir / "backlog.yaml"
    path.write_text(yaml.safe_dump(rows or ROWS), encoding="utf-8")
    code, _, err = cli(capsys, "import", str(path), "--database-url", url)
    assert code == 0, err


def _sessions(url: str) -> list:
    db = Database(url)
    try:
        return db.sessions()
    finally:
        db.dispose()


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def _nothing_charged(url: str) -> None:
    for phase in phases(url).values():
        assert phase.state is PhaseState.QUEUED, phase
        assert phase.attempts - phase.retry_base == 0, phase


def test_an_unwritable_log_store_claims_nothing_in_any_session(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    _backlog(workdir, capsys, url)
    (workdir / "not-a-dir").write_text("a file where the log directory should be")
    store = str(workdir / "not-a-dir" / "logs")
    for _ in range(3):  # main burned the backlog in three sessions: max attempts reached
        code, _, err = cli(capsys, "drain", "--database-url", url, "--executor", "local", "--log-store", store)
        assert code == 2, err
        lines = _error_lines(err)
        assert len(lines) == 1 and "log store" in lines[0] and "Not a directory" in lines[0], err
    assert attempts(url) == []
    assert _sessions(url) == []
    _nothing_charged(url)


def test_s3_without_s3fs_names_the_extra(workdir, capsys, monkeypatch):
    url = f"sqlite:///{workdir / 'b.db'}"
    _backlog(workdir, capsys, url)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed: import raises ImportError
    code, _, err = cli(capsys, "drain", "--database-url", url, "--executor", "local",
                       "--log-store", "s3://bucket/logs")
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "pip install 'batchdrain[s3]'" in lines[0] and "ImportError" not in err, err
    assert attempts(url) == [] and _sessions(url) == []


@pytest.mark.parametrize("how", ["environment", "option"])
def test_s3_with_no_reachable_endpoint_starts_no_session(workdir, capsys, s3_server, monkeypatch, how):
    """Main left the session row ``running`` for good; the endpoint comes from the standard
    ``AWS_ENDPOINT_URL`` (as on main) or from ``--log-store-option endpoint_url=``."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    url = f"sqlite:///{workdir / 'b.db'}"
    _backlog(workdir, capsys, url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    if how == "environment":
        monkeypatch.setenv("AWS_ENDPOINT_URL", nowhere)
        extra: list[str] = []
    else:
        extra = ["--log-store-option", f"endpoint_url={nowhere}", "--log-store-option", "connect_timeout=1"]
    code, _, err = cli(capsys, "drain", "--database-url", url, "--executor", "local",
                       "--log-store", "s3://bucket/logs", *extra, "--retry-attempts", "2", "--retry-max-seconds", "3")
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "log store s3://bucket/logs" in lines[0], err
    assert all(s.status != "running" for s in _sessions(url))
    assert _sessions(url) == [] and attempts(url) == []
    _nothing_charged(url)


def test_a_directory_store_failing_mid_session_halts_it_and_charges_nothing(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    store = workdir / "logs"
    breaker = ("import pathlib, shutil, sys; p = pathlib.Path(sys.argv[1]); shutil.rmtree(p); "
               "p.write_text('the log directory is gone'); print('broke the store')")
    rows = [{"run_id": "r", "phase_id": "breaker", "command": ["python3", "-c", breaker, str(store)]},
            *ROWS]
    _backlog(workdir, capsys, url, rows)
    code, _, err = cli(capsys, "drain", "--database-url", url, "--executor", "local", "--log-store", str(store),
                       "--parallelism", "1")
    assert code == 1, err
    assert "log store failed" in err
    [session] = _sessions(url)
    assert session.status == "failed" and session.error and "log store" in session.error
    after = phases(url)
    assert after[("r", "breaker")].state is PhaseState.COMPLETE  # it ran; its own log was open already
    for i in range(4):
        phase = after[("r", f"p{i}")]
        assert phase.state is PhaseState.QUEUED and phase.attempts - phase.retry_base == 0, phase
    assert len([a for a in attempts(url) if a.phase_id != "breaker"]) <= 1  # the one that met it, uncharged


def test_an_s3_store_failing_mid_session_halts_it_and_charges_nothing(workdir, capsys, s3_store):
    store, options = s3_store
    url = f"sqlite:///{workdir / 'b.db'}"
    marker = workdir / "cut-the-store"
    cutter = (f"import pathlib; print('x' * 1000); pathlib.Path({str(marker)!r}).touch(); "
              "print('store cut')")
    rows = [{"run_id": "r", "phase_id": "cutter", "command": ["python3", "-c", cutter]}, *ROWS]
    _backlog(workdir, capsys, url, rows)
    with CuttableProxy(options["endpoint_url"], cut_when=marker) as proxy:
        code, _, err = cli(capsys, "drain", "--database-url", url, "--executor", "local", "--log-store", store,
                           "--log-store-option", f"endpoint_url={proxy.url}", "--parallelism", "1",
                           "--retry-attempts", "2", "--retry-max-seconds", "3")
    assert code == 1, err
    assert "log store failed" in err
    [session] = _sessions(url)
    assert session.status == "failed" and "log store" in (session.error or "")
    _nothing_charged(url)  # the cutter too: its log could not be stored, so it is run again
