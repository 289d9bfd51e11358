"""Chaos harness: several controllers on one database, SIGKILLed at random, restarted.

    python -m tests.chaos.chaos --database-url postgresql://... --phases 200 --kills 20 --controllers 3
    python -m tests.chaos.chaos ... --executor kubernetes --namespace chaos --image batchdrain:dev

Controllers run `batchdrain drain` in a loop (a finished session is followed by a new
one while work remains); a killer SIGKILLs a random live controller at random moments.
Afterwards the backlog is audited: every phase COMPLETE or FAILED, every attempt
finished with an exit code or an explained null, no two attempts of one phase
overlapping in time, no attempt number used twice. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "controller"))

from batchdrain.db import AttemptRecord, Database, NewPhase  # noqa: E402
from batchdrain.domain import PhaseSpec, PhaseState  # noqa: E402


def enqueue(db: Database, phases: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(phases):
        seconds = rng.uniform(0.2, 1.5)
        rows.append(NewPhase(f"chaos-{i % 7}", f"phase-{i:04d}", PhaseSpec(
            command=("python3", "-c", f"import time; print('working', flush=True); time.sleep({seconds:.2f}); "
                                      "print('done')"))))
    db.enqueue(rows)


def remaining(db: Database, max_attempts: int) -> int:
    """Phases some session could still run (queued, executing, or failed with attempts left)."""
    left = 0
    for p in db.phases():
        retryable = p.state is PhaseState.FAILED and p.attempts - p.retry_base < max_attempts
        if p.state in (PhaseState.QUEUED, PhaseState.EXECUTING) or retryable:
            left += 1
    return left


def run_chaos(*, database_url: str, workdir: Path, phases: int, kills: int, controllers: int,
              lease_seconds: float = 2.0, seed: int = 7, extra: list[str] | None = None,
              deadline_seconds: float = 900.0, kill_gap: tuple[float, float] = (0.5, 3.0)) -> dict[str, Any]:
    rng = random.Random(seed)
    db = Database(database_url)
    db.upgrade()
    enqueue(db, phases, seed)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
           "PYTHONPATH": str(ROOT / "controller")}
    argv = [sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", database_url,
            "--lease-seconds", str(lease_seconds), "--parallelism", "4", "--batch-size", "25",
            "--log-store", str(workdir / "logs"), "--quiet", *(extra or ["--executor", "local"])]
    procs: list[subprocess.Popen[bytes] | None] = [None] * controllers
    kill_times: list[float] = []
    sessions_started = 0
    deadline = time.monotonic() + deadline_seconds
    next_kill = time.monotonic() + rng.uniform(kill_gap[0] * 2, kill_gap[1])
    unexpected: list[str] = []
    while time.monotonic() < deadline:
        for slot, proc in enumerate(procs):
            if proc is not None and proc.poll() is not None:
                if proc.returncode not in (0, -signal.SIGKILL):
                    unexpected.append(f"controller exited {proc.returncode}: {proc.stderr.read()[-500:]!r}"
                                      if proc.stderr else str(proc.returncode))
                if proc.stderr:
                    proc.stderr.close()
                procs[slot] = None
            if procs[slot] is None and remaining(db, 3) > 0:
                procs[slot] = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE)
                sessions_started += 1
        alive = [p for p in procs if p is not None and p.poll() is None]
        # A victim is a controller with an attempt running: on a loaded host a controller
        # can take longer to start than the gap between kills, and killing only starting
        # controllers would test nothing (this happened in CI).
        working = _with_running_attempts(db, alive) if len(kill_times) < kills and time.monotonic() >= next_kill else []
        if working:
            victim = rng.choice(working)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kill_times.append(time.time())
            next_kill = time.monotonic() + rng.uniform(*kill_gap)
        if not alive and remaining(db, 3) == 0:
            break
        time.sleep(0.2)
    for proc in procs:
        if proc is not None:
            proc.wait(timeout=120)
            if proc.stderr:
                proc.stderr.close()
    try:
        return audit(db, kill_times=kill_times, sessions=sessions_started, unexpected=unexpected, phases=phases)
    finally:
        db.dispose()


def _with_running_attempts(db: Database, alive: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    """The live controllers whose session has an attempt running, found by the pid in its identity."""
    sessions = {row.session_id for row in db.attempts() if row.status == "running"}
    pids = {((db.session(s).identity or {}).get("controller") or {}).get("pid") for s in sessions}
    return [p for p in alive if p.pid in pids]


def audit(db: Database, *, kill_times: list[float], sessions: int, unexpected: list[str],
          phases: int) -> dict[str, Any]:
    rows = db.attempts()
    by_phase: dict[tuple[str, str], list[AttemptRecord]] = defaultdict(list)
    for row in rows:
        by_phase[(row.run_id, row.phase_id)].append(row)
    overlaps, duplicates, unexplained, unfinished = [], [], [], []
    for key, attempts in by_phase.items():
        numbers = [a.attempt for a in attempts]
        if len(numbers) != len(set(numbers)):
            duplicates.append(key)
        spans = sorted((a.created_at, a.finished_at or a.created_at) for a in attempts)
        overlaps += [key for (_, end), (start, _) in itertools.pairwise(spans) if start < end]
    for row in rows:
        if row.status != "finished":
            unfinished.append(row.attempt_pk)
        elif row.exit_code is None and not row.exit_code_reason:
            unexplained.append(row.attempt_pk)
    states = defaultdict(int)
    for phase in db.phases():
        states[phase.state.value] += 1
    recovery = []
    for kill in kill_times:
        # Recovered = a later session finished the killed controller's attempt: the local
        # executor records it controller_interrupted; Kubernetes adopts the Job and
        # records its real outcome.
        adopted = [r.finished_at.timestamp() - kill for r in rows
                   if (r.failure_class == "controller_interrupted"
                       or "adopted_by_session" in (r.raw_status or {}))
                   and r.finished_at and r.finished_at.timestamp() >= kill]
        if adopted:
            recovery.append(min(adopted))
    return {
        "phases": phases, "kills": len(kill_times), "sessions": sessions, "attempts": len(rows),
        "states": dict(states), "lost": phases - states.get("COMPLETE", 0) - states.get("FAILED", 0),
        "duplicates": len(duplicates), "overlaps": len(overlaps), "unfinished_attempts": len(unfinished),
        "unexplained_nulls": len(unexplained), "unexpected_exits": unexpected,
        "interrupted_attempts": sum(r.failure_class == "controller_interrupted" for r in rows),
        "adopted_attempts": sum("adopted_by_session" in (r.raw_status or {}) for r in rows),
        "recovery_seconds_median": round(statistics.median(recovery), 2) if recovery else None,
        "recovery_seconds_max": round(max(recovery), 2) if recovery else None,
    }


def assert_nothing_lost(result: dict[str, Any], *, kills: int) -> None:
    """What every chaos run must show, whichever executor ran the phases."""
    assert result["kills"] == kills, result
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0 and result["overlaps"] == 0, result
    assert result["unfinished_attempts"] == 0 and result["unexplained_nulls"] == 0, result
    assert result["unexpected_exits"] == [], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--phases", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/batchdrain-chaos")
    parser.add_argument("--kill-gap", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"),
                        help="seconds between kills (a Kubernetes controller takes ~3s to start)")
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("extra", nargs="*", help="extra drain flags after --, e.g. -- --executor kubernetes ...")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = run_chaos(database_url=args.database_url, workdir=Path(args.workdir), phases=args.phases,
                       kills=args.kills, controllers=args.controllers, extra=args.extra or None,
                       kill_gap=tuple(args.kill_gap), lease_seconds=args.lease_seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
