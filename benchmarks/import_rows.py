"""`batchdrain import` of a large backlog file: rows per second and peak RSS (issue 15.2).

    python3 benchmarks/import_rows.py --rows 1000000 [--formats json,jsonl,yaml] \
        [--controller controller] [--workdir /tmp/import-bench]

Writes a backlog file of ``--rows`` trivial phases in 50 runs per format (a JSON array,
JSON Lines, a YAML block sequence), then, for each file, initialises a fresh SQLite
file (``batchdrain runs``, so the schema is not timed) and runs ``batchdrain import``
on it in a child process with ``PYTHONPATH=--controller``. The wall time includes the
child's start-up; CPU time (user + system) and peak RSS are the child's own, from
``os.wait4`` (rows per CPU second moves less than wall time on a shared machine). The
phase count is checked afterwards with the standard library's ``sqlite3``.

``--controller`` points at another checkout's ``controller/`` directory to measure
older code the same way (e.g. main before the streaming import).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 50
FORMATS = ("json", "jsonl", "yaml")


def rows(count: int) -> Iterator[dict[str, object]]:
    for i in range(count):
        yield {"run_id": f"run-{i % RUNS:02d}", "phase_id": f"p{i:07d}", "command": ["true"]}


def write_file(path: Path, fmt: str, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        if fmt == "json":
            out.write("[\n")
            for i, row in enumerate(rows(count)):
                out.write(("" if i == 0 else ",\n") + json.dumps(row))
            out.write("\n]\n")
        elif fmt == "jsonl":
            for row in rows(count):
                out.write(json.dumps(row) + "\n")
        else:
            for row in rows(count):
                out.write(f"- run_id: {row['run_id']}\n  phase_id: {row['phase_id']}\n  command: [\"true\"]\n")


def run_child(argv: list[str], env: dict[str, str]) -> tuple[int, float, float, float, str]:
    """(exit code, wall seconds, CPU seconds, peak RSS in MB, stderr) of one batchdrain command."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "batchdrain.cli", *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() would reap the child and lose its rusage: read the pipes, then wait4.
    assert child.stdout is not None and child.stderr is not None
    child.stdout.read()
    err = child.stderr.read().decode(errors="replace")
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, err


def measure(path: Path, fmt: str, count: int, controller: Path, workdir: Path) -> dict[str, object]:
    db = workdir / f"{fmt}.db"
    for leftover in workdir.glob(f"{fmt}.db*"):
        leftover.unlink()
    url = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": str(controller)}
    code, _, _, _, err = run_child(["runs", "--database-url", url], env)
    if code != 0:
        raise SystemExit(f"initialising {db} failed: {err}")
    code, wall, cpu, rss, err = run_child(["import", str(path), "--database-url", url], env)
    stored = 0
    if code == 0:
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM phases").fetchone()[0]
    return {"format": fmt, "rows": count, "code": code, "stored": stored, "wall_s": round(wall, 1),
            "rows_per_s": round(count / wall) if code == 0 else 0, "cpu_s": round(cpu, 1),
            "rows_per_cpu_s": round(count / cpu) if code == 0 else 0, "peak_rss_mb": round(rss, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1), "error": err.strip()[-300:] if code else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--controller", type=Path, default=ROOT / "controller")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/batchdrain-import-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"controller: {args.controller.resolve()}", flush=True)
    print("| format | rows | file MB | stored | wall (s) | rows/s | CPU (s) | rows/CPU-s | peak RSS (MB) |",
          flush=True)
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for fmt in args.formats.split(","):
        path = args.workdir / f"backlog-{args.rows}.{fmt}"
        if not path.exists():
            write_file(path, fmt, args.rows)
        result = measure(path, fmt, args.rows, args.controller, args.workdir)
        print(f"| {fmt} | {args.rows:,} | {result['file_mb']} | {result['stored']:,} | {result['wall_s']} | "
              f"{result['rows_per_s']:,} | {result['cpu_s']} | {result['rows_per_cpu_s']:,} | "
              f"{result['peak_rss_mb']} |", flush=True)
        if result["code"]:
            print(f"  exit {result['code']}: {result['error']}", flush=True)


if __name__ == "__main__":
    main()
