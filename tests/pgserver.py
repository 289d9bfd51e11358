"""A throwaway Postgres server for tests, from Debian's initdb/pg_ctl (no container needed).

Used by the integration tier (loopback, trust auth) and by the in-cluster e2e tests
(listening on an address pods can reach, password auth, so the password's journey
through Secrets can be checked). Never bound to anything outside this machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_tool(name: str) -> str:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"Postgres tool {name!r} not found: install Debian's postgresql package "
                           "(`make test` does) or set BATCHDRAIN_TEST_POSTGRES_URL")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    base: Path
    host: str
    port: int
    user: str
    password: str | None
    run_as: list[str]

    @property
    def _pg_ctl(self) -> list[str]:
        return [*self.run_as, pg_tool("pg_ctl"), "-D", str(self.base / "data")]

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.base} -c listen_addresses={self.host} -c fsync=off "
                "-c max_connections=200")

    def start(self) -> None:
        subprocess.run([*self._pg_ctl, "-l", str(self.base / "server.log"), "-w", "-t", "60",
                        "-o", self._options(), "start"], check=True, capture_output=True, timeout=120)

    def restart(self, *, down_seconds: float = 0.0) -> None:
        """Restart in fast mode (open connections are terminated), optionally staying down a while.

        For fault tests: the data survives, every client connection does not.
        """
        if down_seconds <= 0:
            # -l as for start: a server without it inherits pg_ctl's pipes and capture never ends.
            subprocess.run([*self._pg_ctl, "-l", str(self.base / "server.log"), "-m", "fast", "-w", "-t", "60",
                            "-o", self._options(), "restart"], check=True, capture_output=True, timeout=120)
            return
        subprocess.run([*self._pg_ctl, "-m", "fast", "-w", "-t", "60", "stop"], check=True, capture_output=True,
                       timeout=120)
        time.sleep(down_seconds)
        self.start()

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.run_as, pg_tool("pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(*, host: str = "127.0.0.1", password: str | None = None) -> PostgresServer:
    # Not under pytest's tmp dir: other pytest runs chmod that 0700, locking the postgres user out.
    base = Path(tempfile.mkdtemp(prefix="batchdrain-pg-"))
    data = base / "data"
    port = free_port(host)
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        pwd.getpwnam("postgres")
        shutil.chown(base, "postgres", "postgres")
        base.chmod(0o755)
        run_as = ["runuser", "-u", "postgres", "--"]
    initdb = [*run_as, pg_tool("initdb"), "-D", str(data), "-U", "postgres", "--no-sync", "-E", "UTF8"]
    if password:
        pwfile = base / "pw"
        pwfile.write_text(password)
        if run_as:
            shutil.chown(pwfile, "postgres", "postgres")
        initdb += ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
    else:
        initdb += ["-A", "trust"]
    subprocess.run(initdb, check=True, capture_output=True)
    if password:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    server = PostgresServer(base, host, port, "postgres", password, run_as)
    server.start()
    return server
