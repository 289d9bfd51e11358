"""Integration harness: real SQLite files, a real Postgres server and a real S3 server.

Postgres comes from ``BATCHDRAIN_TEST_POSTGRES_URL`` when set (a server the CI or a
developer runs), otherwise this harness starts one with Debian's ``initdb``/``pg_ctl``
in a temporary directory, for the whole test session. A missing Postgres is an error,
never a skip: these tests are the proof that the Postgres path works. The S3 server
(``tests/s3server.py``: SeaweedFS from ``hack/s3``) is started the same way, on first use.
"""

from __future__ import annotations

import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import start_postgres
from tests.s3server import S3Server, start_s3


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    given = os.environ.get("BATCHDRAIN_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The real S3 server (SeaweedFS) for the whole session; fails loudly, never skips."""
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, str]]:
    """A fresh prefix per test in the server's bucket: (``s3://bucket/<prefix>``, the
    ``--log-store-option`` values). One bucket: SeaweedFS gives each bucket volumes of its own."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}", {"endpoint_url": s3_server.endpoint}


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
