"""Memory of a whole session and of the read commands, as the session grows (issue 15.1).

For each size N: a fresh SQLite file with N trivial phases (``true``) in ``--runs``
runs, then one real ``batchdrain drain`` (local executor, ``--parallelism``) in a
fresh process, measured by its own peak RSS (``ru_maxrss`` of that child, read by
``/usr/bin/time``; it includes the report written at the end) and its wall time. Then,
on that session, each read command in a fresh process: ``logs`` of one phase,
``sessions show``, ``sessions list`` (after ``--session-copies`` copies of the
session row, report included, so that the listing has several large sessions),
``report --format json|md|html -o`` (``--reads-only`` measures these again on the
sessions a previous run left in ``--workdir``). The RSS slope is (peak at the largest N - peak
at the smallest N) / (difference in N), in KB per phase.

``--side NAME=CONTROLLER_DIR`` may be given several times (default: this checkout):
the sides run one after the other for each N, so a before/after comparison shares the
machine's state. Figures go to stdout as a markdown table and to ``--json``.

    PYTHONPATH=controller:. python benchmarks/session_memory.py --phases 10000 100000 \\
        [--side after=controller --side before=/work/main/controller] [--workdir /tmp/bd-mem] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_SEED = """
import sys
from batchdrain.db import Database, NewPhase
from batchdrain.domain import PhaseSpec
url, phases, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = Database(url)
db.upgrade()
spec = PhaseSpec(command=("true",))
batch = []
for i in range(phases):
    batch.append(NewPhase(run_id=f"run-{i % runs:03d}", phase_id=f"phase-{i:07d}", spec=spec))
    if len(batch) == 5000:
        db.enqueue(batch)
        batch = []
if batch:
    db.enqueue(batch)
"""


@dataclass
class Measure:
    side: str
    phases: int
    what: str
    peak_rss_mb: float
    wall_seconds: float
    cpu_seconds: float  # user + system: on a loaded machine, what the command itself cost
    exit_code: int


def _env(controller: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(controller), str(controller.parent)])}


def _measured(command: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """Peak RSS (MB) of the command and its waited-for children, wall and CPU seconds, exit code.

    Through ``/usr/bin/time``, which forks the command from its own small process: a
    child spawned (vfork) straight from this process starts with this process's
    high-water mark as its ``ru_maxrss`` (the old mm's, recorded at exec), which after
    copying large rows here hid every figure under ~120 MB.
    """
    started = time.monotonic()
    peak = cwd / "peak-kb.txt"
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "ab") as err:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", str(peak), *command], env=env, cwd=cwd,
                              stdout=out, stderr=err, check=False)
    kb, user, system = peak.read_text().split()[-3:]
    return int(kb) / 1024, time.monotonic() - started, float(user) + float(system), proc.returncode


def _copy_sessions(db_path: Path, session_id: str, copies: int) -> None:
    conn = sqlite3.connect(db_path)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(drain_sessions)")]
        rest = ", ".join(c for c in columns if c != "session_id")
        for i in range(copies):
            conn.execute(f"INSERT INTO drain_sessions (session_id, {rest}) "
                         f"SELECT ?, {rest} FROM drain_sessions WHERE session_id = ?", (f"{session_id}-copy{i}",
                                                                                       session_id))
        conn.commit()
    finally:
        conn.close()


def run_side(side: str, controller: Path, phases: int, *, runs: int, parallelism: int, copies: int,
             workdir: Path, reads_only: bool = False) -> list[Measure]:
    work = workdir / f"{side}-{phases}"
    env = _env(controller)
    db_path = work / "backlog.db"
    url = f"sqlite:///{db_path}"
    py = sys.executable
    if not reads_only:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        subprocess.run([py, "-c", _SEED, url, str(phases), str(runs)], env=env, cwd=work, check=True)
    store = str(work / "logs")
    base = [py, "-m", "batchdrain.cli"]
    measures: list[Measure] = []

    def measure(what: str, *args: str) -> None:
        rss, wall, cpu, code = _measured([*base, *args], env=env, cwd=work)
        measures.append(Measure(side, phases, what, round(rss, 1), round(wall, 2), round(cpu, 2), code))
        print(f"{side} {phases:>7} {what:<22} {rss:8.1f} MB {wall:8.2f} s {cpu:8.2f} s CPU exit {code}",
              file=sys.stderr, flush=True)

    if not reads_only:
        measure("drain", "drain", "--database-url", url, "--executor", "local", "--parallelism",
                str(parallelism), "--quiet", "--log-store", store)
    conn = sqlite3.connect(db_path)
    conn.execute("DELETE FROM drain_sessions WHERE session_id LIKE '%-copy%'")  # a re-run copies afresh
    conn.commit()
    (session_id,) = conn.execute("SELECT session_id FROM drain_sessions").fetchone()
    conn.close()
    db = ["--database-url", url]
    measure("startup (--help)", "--help")  # the floor of any command: Python and the imports
    measure("logs", "logs", session_id, f"phase-{phases // 2:07d}", *db, "--log-store", store)
    measure("sessions show", "sessions", "show", session_id, *db)
    _copy_sessions(db_path, session_id, copies)
    measure(f"sessions list ({copies + 1})", "sessions", "list", *db)
    for fmt in ("json", "md", "html"):
        measure(f"report --format {fmt}", "report", session_id, "--format", fmt, "-o",
                str(work / f"report.{fmt}"), *db)
    return measures


def _table(measures: list[Measure]) -> str:
    lines = ["| side | phases | what | peak RSS | wall | CPU | exit |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {m.side} | {m.phases:,} | {m.what} | {m.peak_rss_mb:.1f} MB | {m.wall_seconds:.2f} s | "
              f"{m.cpu_seconds:.2f} s | {m.exit_code} |" for m in measures]
    for side in dict.fromkeys(m.side for m in measures):
        drains = sorted((m.phases, m.peak_rss_mb) for m in measures if m.side == side and m.what == "drain")
        if len(drains) >= 2 and drains[-1][0] > drains[0][0]:
            slope = (drains[-1][1] - drains[0][1]) * 1024 / (drains[-1][0] - drains[0][0])
            lines.append(f"\n{side}: drain RSS slope {drains[0][0]:,} -> {drains[-1][0]:,} phases: "
                         f"{slope:.3f} KB/phase")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--parallelism", type=int, default=32)
    parser.add_argument("--session-copies", type=int, default=5)
    parser.add_argument("--side", action="append", default=[], help="NAME=CONTROLLER_DIR (repeatable)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/batchdrain-session-memory"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reads-only", action="store_true",
                        help="Measure the read commands again on the sessions a previous run left in --workdir.")
    args = parser.parse_args(argv)
    sides = [s.split("=", 1) for s in args.side] or [["this", str(ROOT / "controller")]]
    measures: list[Measure] = []
    for phases in args.phases:
        for side, controller in sides:
            measures += run_side(side, Path(controller).resolve(), phases, runs=args.runs,
                                 parallelism=args.parallelism, copies=args.session_copies, workdir=args.workdir,
                                 reads_only=args.reads_only)
            if args.json:  # after each run: a long series keeps what it measured
                args.json.write_text(json.dumps([asdict(m) for m in measures], indent=1) + "\n")
    print(_table(measures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
