"""Configuration errors (issue 16) are exit 2 with one line, never "controller error" or a
traceback: a newer schema, a missing driver or log-store backend, a metrics port in
use, an output that cannot be written; and controllers that migrate an empty Postgres
at once all succeed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from batchdrain.db import Database
from tests.integration.helpers import SRC, attempts, cli, phases

FUTURE = "9999_from_a_newer_batchdrain"


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "controller error" not in err, err
    return lines[0]


def _sessions(url: str) -> list[object]:
    db = Database(url)
    try:
        return list(db.sessions(10))
    finally:
        db.dispose()


def _revision(url: str) -> str:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["runs", "URL"], ["db", "upgrade", "URL"], ["drain", "--executor", "local", "URL"],
                                     ["enqueue", "URL", "--run-id", "r", "--phase-id", "q", "--", "true"]])
def test_a_database_newer_than_this_version_names_both_revisions(workdir, database_url, capsys, command):
    assert cli(capsys, "enqueue", "--database-url", database_url, "--run-id", "r", "--phase-id", "p", "--",
               "true")[0] == 0
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    engine.dispose()
    argv = [a for part in command for a in (["--database-url", database_url] if part == "URL" else [part])]
    code, out, err = cli(capsys, *argv)
    assert code == 2, (out, err)
    line = _one_error_line(err)
    assert f"is at revision {FUTURE}, newer than this batchdrain knows (its latest is {head})" in line, line
    assert _revision(database_url) == FUTURE
    assert set(phases(database_url)) == {("r", "p")}


def _cli_without(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where ``import module`` fails, as if it were not installed."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from batchdrain.cli import main\n"
            f"sys.exit(main({args!r}))")
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)


def test_postgres_without_its_driver_names_what_to_install(workdir, postgres_url):
    done = _cli_without("psycopg", ["runs", "--database-url", postgres_url], workdir)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert "the postgresql driver psycopg is not installed: pip install 'psycopg[binary]'" in line, line


def test_an_s3_log_store_without_s3fs_names_the_extra_and_claims_nothing(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    assert cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", "p", "--", "true")[0] == 0
    done = _cli_without("s3fs", ["drain", "--database-url", url, "--executor", "local", "--quiet",
                                 "--log-store", "s3://bucket/logs"], workdir)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert ("an s3:// log store needs the s3fs package, which is not installed: "
            "pip install 'batchdrain[s3]'") in line, line
    assert attempts(url) == [] and _sessions(url) == []
    assert phases(url)[("r", "p")].state == "QUEUED"


def test_a_metrics_port_in_use_is_named_and_nothing_starts(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    assert cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", "p", "--", "true")[0] == 0
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = cli(capsys, "drain", "--database-url", url, "--executor", "local", "--quiet",
                             "--metrics-port", str(port))
    assert code == 2, (out, err)
    line = _one_error_line(err)
    assert f"cannot serve metrics on port {port}: Address already in use" in line, line
    assert attempts(url) == [] and _sessions(url) == []


@pytest.fixture
def finished_session(workdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    url = f"sqlite:///{workdir / 'b.db'}"
    assert cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", "p", "--", "true")[0] == 0
    assert cli(capsys, "drain", "--database-url", url, "--executor", "local", "--quiet")[0] == 0
    (session,) = _sessions(url)
    return url, session.session_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(("target", "reason"), [
    ("/nonexistent/x.html", "No such file or directory"),
    ("/sys/x.html", "Permission denied"),  # sysfs takes no new files, not even from root
    ("DIR", "it is a directory"),
])
def test_a_report_output_that_cannot_be_written_is_one_line(workdir, capsys, finished_session, target, reason):
    url, session_id = finished_session
    output = str(workdir) if target == "DIR" else target
    code, out, err = cli(capsys, "report", session_id, "--format", "html", "-o", output, "--database-url", url)
    assert code == 2, (out, err)
    assert f"cannot write {output}: {reason}" in _one_error_line(err)
    assert not Path(output + ".tmp").exists()


BARRIER = """
import os, sys, time
from batchdrain.cli import main
go, ready = sys.argv.pop(1), sys.argv.pop(1)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
sys.exit(main(sys.argv[1:]))
"""


def test_controllers_migrating_an_empty_postgres_at_once_all_succeed(workdir, postgres_url):
    """Each process has imported everything and waits for one file, then all go at once:
    they migrate the empty database (one at a time, under the advisory lock) and enqueue
    into the same new run (which the first to insert it creates; no "duplicate")."""
    go = workdir / "go"
    script = workdir / "barrier.py"
    script.write_text(BARRIER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, str(script), str(go), str(workdir / f"ready{i}"), "enqueue",
                               "--database-url", postgres_url,
                               "--run-id", "r", "--phase-id", f"p{i}", "--", "true"],
                              cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    deadline = time.monotonic() + 300
    while not all((workdir / f"ready{i}").exists() for i in range(6)) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [(p.wait(), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 6, [err for _, _, err in results]
    db = Database(postgres_url)
    try:
        assert db.current_revision() == db.head_revision()
    finally:
        db.dispose()
    assert set(phases(postgres_url)) == {("r", f"p{i}") for i in range(6)}
