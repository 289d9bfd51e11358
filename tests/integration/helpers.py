"""Small helpers shared by integration tests: run the real CLI, read the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchdrain.cli import main
from batchdrain.db import AttemptRecord, Database

SRC = str(Path(__file__).resolve().parents[2] / "controller")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def controller_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The real controller in its own process (for signals and crash tests)."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "batchdrain.cli", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def peak_rss_kib(command: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 stderr: int = subprocess.PIPE) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of ``command``, through GNU ``time``.

    Not ``wait4`` on a child of this process: a child spawned (vfork) from pytest
    inherits pytest's own high-water mark as its ``ru_maxrss`` (the old mm's, recorded
    at exec), so after a long run of tests every figure was at least pytest's size.
    ``time`` forks the command from its own small process.
    """
    peak = cwd / ".peak-rss-kib"
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), *command], cwd=cwd, env=full_env,
                          stdout=subprocess.DEVNULL, stderr=stderr, check=False)
    err = proc.stderr.decode() if proc.stderr is not None else ""
    try:
        kib = int(peak.read_text().split()[-1])
    finally:
        peak.unlink()
    return proc.returncode, err, kib


def attempts(url: str, **filters: Any) -> list[AttemptRecord]:
    db = Database(url)
    try:
        return db.attempts(**filters)
    finally:
        db.dispose()


def phases(url: str) -> dict[tuple[str, str], Any]:
    db = Database(url)
    try:
        return {p.key: p for p in db.phases()}
    finally:
        db.dispose()
