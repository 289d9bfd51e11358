"""Integration harness: real SQLite files and a real Postgres server.

Postgres comes from ``BATCHDRAIN_TEST_POSTGRES_URL`` when set (a server the CI or a
developer runs), otherwise this harness starts one with Debian's ``initdb``/``pg_ctl``
in a temporary directory, for the whole test session. A missing Postgres is an error,
never a skip: these tests are the proof that the Postgres path works.
"""

from __future__ import annotations

import http.server
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_tool(name: str) -> str:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"Postgres tool {name!r} not found: install Debian's postgresql package "
                           "(`.ci/run` does) or set BATCHDRAIN_TEST_POSTGRES_URL")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    given = os.environ.get("BATCHDRAIN_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    # Not under pytest's tmp dir: other pytest runs chmod that 0700, locking the postgres user out.
    base = Path(tempfile.mkdtemp(prefix="batchdrain-pg-"))
    data = base / "data"
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        pwd.getpwnam("postgres")
        shutil.chown(base, "postgres", "postgres")
        base.chmod(0o755)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, _pg_tool("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    log = base / "server.log"
    subprocess.run([*run_as, _pg_tool("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                          "-c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, _pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database per test on the shared server."""
    name = f"bd_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backlog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def api_url() -> Iterator[str]:
    """A real HTTP server with a /health endpoint, standing in for the phases' API."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "healthy"}')

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run CLI commands in a scratch directory with no BATCHDRAIN_* leaking in."""
    for key in list(os.environ):
        if key.startswith("BATCHDRAIN_") and key != "BATCHDRAIN_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config: the local executor
    monkeypatch.chdir(tmp_path)
    return tmp_path
