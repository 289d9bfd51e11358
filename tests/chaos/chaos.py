"""Chaos harness: several controllers on one database, SIGKILLed while they run attempts, restarted.

    python -m tests.chaos.chaos --database-url postgresql://... --phases 200 --kills 20 --controllers 3
    python -m tests.chaos.chaos ... -- --executor kubernetes --namespace chaos --default-image batchdrain:dev

Controllers run `batchdrain drain` in a loop (a finished session is followed by a new
one while work remains); the harness SIGKILLs one of them now and then. Afterwards the
backlog is audited: every phase COMPLETE or FAILED, every attempt finished with an exit
code or an explained null, no two attempts of one phase overlapping in time, no attempt
number used twice. Prints the figures as JSON.

The kill schedule follows the drain's progress, not the clock, so that a slow or loaded
machine runs the same schedule as a fast one (``KillPlan``):

* kill ``k`` (0-based) is due once ``k * step`` phases are settled, and it lands on a
  live controller whose session has an attempt running (found by the pid in the
  session's identity): killing a controller that is still starting tests nothing;
* the backlog is released in steps: while kills remain, at most
  ``(kills_done + 1) * step + window`` phases are enqueued, ``window`` being what the
  controllers can run at once. The drain therefore cannot finish before the last kill:
  between a kill falling due and the released work running out, ``step + window``
  phases must settle without the harness once seeing an attempt running.
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
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "controller"))

from batchdrain.db import AttemptRecord, Database, NewPhase  # noqa: E402
from batchdrain.domain import PhaseSpec, PhaseState  # noqa: E402

PARALLELISM = 4
MAX_ATTEMPTS = 3  # the drain's default --max-attempts
POLL_SECONDS = 0.2

Proc = subprocess.Popen[bytes]


def phase_rows(phases: int, seed: int) -> list[NewPhase]:
    rng = random.Random(seed)
    rows = []
    for i in range(phases):
        seconds = rng.uniform(0.2, 1.5)
        rows.append(NewPhase(f"chaos-{i % 7}", f"phase-{i:04d}", PhaseSpec(
            command=("python3", "-c", f"import time; print('working', flush=True); time.sleep({seconds:.2f}); "
                                      "print('done')"))))
    return rows


def enqueue(db: Database, phases: int, seed: int) -> None:
    db.enqueue(phase_rows(phases, seed))


def remaining(db: Database, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Phases some session could still run (queued, executing, or failed with attempts left)."""
    left = 0
    for p in db.phases():
        retryable = p.state is PhaseState.FAILED and p.attempts - p.retry_base < max_attempts
        if p.state in (PhaseState.QUEUED, PhaseState.EXECUTING) or retryable:
            left += 1
    return left


@dataclass(frozen=True)
class KillPlan:
    """When kills fall due and how much of the backlog is released, by progress alone."""

    phases: int
    kills: int
    step: int
    window: int

    @classmethod
    def sized(cls, *, phases: int, kills: int, controllers: int) -> KillPlan:
        window = controllers * PARALLELISM
        # Kills spread over the first part of the drain; the last one is due with at
        # least ``step + window`` phases still to release or run.
        step = (phases - window) // (kills + 1) if kills else phases
        if kills and step < 1:
            raise ValueError(f"{phases} phases are too few for {kills} kills with {controllers} controllers: "
                             f"need at least {window + kills + 1}")
        return cls(phases=phases, kills=kills, step=step, window=window)

    def due(self, *, kills_done: int, settled: int) -> bool:
        return kills_done < self.kills and settled >= kills_done * self.step

    def release_target(self, *, kills_done: int, stalls: int = 0) -> int:
        if kills_done >= self.kills:
            return self.phases
        return min(self.phases, (kills_done + 1 + stalls) * self.step + self.window)


@dataclass
class _Chaos:
    """One chaos run: the controller slots, the backlog released so far, the kills."""

    db: Database
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    plan: KillPlan
    rows: list[NewPhase]
    rng: random.Random
    procs: list[Proc | None]
    released: int = 0
    stalls: int = 0  # the released work ran out with kills due: one more step was released
    sessions_started: int = 0
    kill_times: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def run(self, deadline_seconds: float) -> None:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            self._release()
            left = remaining(self.db)
            self._reap()
            alive = [p for p in self.procs if p is not None]
            if not alive and left == 0:
                if self.released >= self.plan.phases:
                    return
                # Everything released has settled and no kill could land: release the
                # next step (counted: a run with stalls is slower than planned).
                self.stalls += 1
                continue
            if left:
                self._spawn()
            self._maybe_kill(alive, settled=self.released - left)
            time.sleep(POLL_SECONDS)

    def _release(self) -> None:
        target = self.plan.release_target(kills_done=len(self.kill_times), stalls=self.stalls)
        if target > self.released:
            self.db.enqueue(self.rows[self.released:target])
            self.released = target

    def _reap(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc is None or proc.poll() is None:
                continue
            if proc.returncode not in (0, -signal.SIGKILL):
                tail = proc.stderr.read()[-500:] if proc.stderr else b""
                self.unexpected.append(f"controller pid {proc.pid} exited {proc.returncode}: {tail!r}")
            if proc.stderr:
                proc.stderr.close()
            self.procs[slot] = None

    def _spawn(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc is None:
                self.procs[slot] = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self.sessions_started += 1

    def _maybe_kill(self, alive: list[Proc], *, settled: int) -> None:
        if not self.plan.due(kills_done=len(self.kill_times), settled=settled):
            return
        working = _with_running_attempts(self.db, [p for p in alive if p.poll() is None])
        if not working:
            return
        victim = self.rng.choice(working)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kill_times.append(time.time())

    def wait_all(self) -> None:
        for proc in self.procs:
            if proc is not None:
                proc.wait(timeout=120)
                if proc.stderr:
                    proc.stderr.close()


def run_chaos(*, database_url: str, workdir: Path, phases: int, kills: int, controllers: int,
              lease_seconds: float = 2.0, seed: int = 7, extra: list[str] | None = None,
              deadline_seconds: float = 900.0) -> dict[str, Any]:
    db = Database(database_url)
    db.upgrade()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
           "PYTHONPATH": str(ROOT / "controller")}
    argv = [sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", database_url,
            "--lease-seconds", str(lease_seconds), "--parallelism", str(PARALLELISM), "--batch-size", "25",
            # Retries at once, as this harness was written for: it audits claims, not backoff.
            "--retry-delay-seconds", "0",
            "--log-store", str(workdir / "logs"), "--quiet", *(extra or ["--executor", "local"])]
    chaos = _Chaos(db=db, argv=argv, env=env, workdir=workdir,
                   plan=KillPlan.sized(phases=phases, kills=kills, controllers=controllers),
                   rows=phase_rows(phases, seed), rng=random.Random(seed), procs=[None] * controllers)
    started = time.monotonic()
    try:
        chaos.run(deadline_seconds)
        chaos.wait_all()
        result = audit(db, kill_times=chaos.kill_times, sessions=chaos.sessions_started,
                       unexpected=chaos.unexpected, phases=phases)
        result.update(released=chaos.released, release_stalls=chaos.stalls, kill_step=chaos.plan.step,
                      wall_seconds=round(time.monotonic() - started, 1))
        return result
    finally:
        db.dispose()


def _with_running_attempts(db: Database, alive: list[Proc]) -> list[Proc]:
    """The live controllers whose session has an attempt running, found by the pid in its identity."""
    sessions = {row.session_id for row in db.attempts() if row.status == "running"}
    pids = {((db.session(s).identity or {}).get("controller") or {}).get("pid") for s in sessions}
    return [p for p in alive if p.pid in pids]


def _overlaps_and_duplicates(rows: list[AttemptRecord]) -> tuple[list[Any], list[Any]]:
    by_phase: dict[tuple[str, str], list[AttemptRecord]] = defaultdict(list)
    for row in rows:
        by_phase[(row.run_id, row.phase_id)].append(row)
    overlaps, duplicates = [], []
    for key, attempts in by_phase.items():
        numbers = [a.attempt for a in attempts]
        if len(numbers) != len(set(numbers)):
            duplicates.append(key)
        spans = sorted((a.created_at, a.finished_at or a.created_at) for a in attempts)
        overlaps += [key for (_, end), (start, _) in itertools.pairwise(spans) if start < end]
    return overlaps, duplicates


def _recovery_seconds(rows: list[AttemptRecord], kill_times: list[float]) -> list[float]:
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
    return recovery


def audit(db: Database, *, kill_times: list[float], sessions: int, unexpected: list[str],
          phases: int) -> dict[str, Any]:
    rows = db.attempts()
    overlaps, duplicates = _overlaps_and_duplicates(rows)
    unfinished = [r.attempt_pk for r in rows if r.status != "finished"]
    unexplained = [r.attempt_pk for r in rows
                   if r.status == "finished" and r.exit_code is None and not r.exit_code_reason]
    states: Counter[str] = Counter(phase.state.value for phase in db.phases())
    recovery = _recovery_seconds(rows, kill_times)
    return {
        "phases": phases, "kills": len(kill_times), "sessions": sessions, "attempts": len(rows),
        "states": dict(states), "lost": phases - states.get("COMPLETE", 0) - states.get("FAILED", 0),
        "duplicates": len(duplicates), "overlaps": len(overlaps), "unfinished_attempts": len(unfinished),
        "unexplained_nulls": len(unexplained), "unexpected_exits": unexpected,
        "classes": dict(Counter(str(r.failure_class) for r in rows)),
        "interrupted_attempts": sum(r.failure_class == "controller_interrupted" for r in rows),
        "adopted_attempts": sum("adopted_by_session" in (r.raw_status or {}) for r in rows),
        "recovery_seconds_median": round(statistics.median(recovery), 2) if recovery else None,
        "recovery_seconds_max": round(max(recovery), 2) if recovery else None,
    }


# -- what is left, for a failing run ----------------------------------------------------------


def _when(value: Any) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value is not None else "-"


def _attempt_line(row: AttemptRecord) -> str:
    raw = row.raw_status or {}
    flags = [f"{k}={raw[k]}" for k in ("adopted_by_session", "interrupted_at") if k in raw]
    if "cleanup_errors" in raw:
        flags.append(f"cleanup_errors={raw['cleanup_errors']}")
    return (f"    attempt #{row.attempt_pk} {row.run_id}/{row.phase_id} a{row.attempt} "
            f"session={row.session_id} status={row.status} class={row.failure_class} "
            f"exit={row.exit_code} created={_when(row.created_at)} started={_when(row.started_at)} "
            f"finished={_when(row.finished_at)} job={row.job_name} pods={row.pod_names} "
            f"{' '.join(flags)}\n      message: {(row.message or '')[:300]}")


def _session_lines(db: Database, rows: list[AttemptRecord]) -> list[str]:
    lines = ["sessions:"]
    per_session = Counter(r.session_id for r in rows)
    for s in sorted(db.sessions(limit=10_000), key=lambda s: s.started_at):
        pid = ((s.identity or {}).get("controller") or {}).get("pid")
        lines.append(f"  {s.session_id} pid={pid} status={s.status} started={_when(s.started_at)} "
                     f"heartbeat={_when(s.heartbeat_at)} ended={_when(s.ended_at)} "
                     f"attempts={per_session.get(s.session_id, 0)} error={(s.error or '')[:200]}")
    return lines


def _object_lines(objects: list[dict[str, Any]], rows: list[AttemptRecord]) -> list[str]:
    lines = [f"objects still present: {len(objects)}"]
    for obj in objects:
        lines.append(f"  {obj['kind']}/{obj['name']} labels={obj['labels']} "
                     f"deletion={obj.get('deletion')} finalizers={obj.get('finalizers')} "
                     f"created={obj.get('created')} status={obj.get('status')}")
        job = obj["name"] if obj["kind"] == "job" else obj.get("job")
        lines += [_attempt_line(r) for r in rows if r.job_name and r.job_name == job] \
            or ["    (no attempt row names this Job)"]
    return lines


def describe(database_url: str, objects: list[dict[str, Any]] | None = None) -> str:
    """Everything a failing run leaves to look at: objects left, odd attempts, sessions.

    ``objects`` are Jobs/pods still present (dicts with kind, name, labels, and when
    known job, deletion, finalizers, created, status), each followed by the attempt
    rows naming its Job. Then every attempt of a phase that has more than one, that is
    not finished, or that did not succeed; then every session.
    """
    db = Database(database_url)
    try:
        rows = db.attempts()
        lines = _object_lines(objects, rows) if objects is not None else []
        per_phase = Counter((r.run_id, r.phase_id) for r in rows)
        odd = [r for r in rows if per_phase[(r.run_id, r.phase_id)] > 1 or r.status != "finished"
               or r.failure_class != "succeeded"]
        states = Counter(p.state.value for p in db.phases())
        lines += [f"phases: {dict(states)}; attempts: {len(rows)} "
                  f"(by class {dict(Counter(str(r.failure_class) for r in rows))})",
                  f"attempts of phases with more than one attempt, unfinished or not succeeded: {len(odd)}"]
        lines += [_attempt_line(r) for r in odd]
        lines += _session_lines(db, rows)
        return "\n".join(lines)
    finally:
        db.dispose()


def assert_nothing_lost(result: dict[str, Any], *, kills: int,
                        explain: Callable[[], str] | None = None) -> None:
    """What every chaos run must show, whichever executor ran the phases.

    On failure the message lists every broken rule, the figures, and ``explain()``
    (``describe`` of the run's database): what was left and why.
    """
    problems = []
    if result["kills"] != kills:
        problems.append(f"{result['kills']} of {kills} kills landed")
    problems += [f"{name}: {result[name]}" for name in
                 ("lost", "duplicates", "overlaps", "unfinished_attempts", "unexplained_nulls") if result[name]]
    if result["unexpected_exits"]:
        problems.append(f"unexpected controller exits: {result['unexpected_exits']}")
    if problems:
        detail = explain() if explain is not None else ""
        raise AssertionError("; ".join(problems) + f"\n{json.dumps(result, indent=1, default=str)}\n{detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--phases", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/batchdrain-chaos")
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("extra", nargs="*", help="extra drain flags after --, e.g. -- --executor kubernetes ...")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = run_chaos(database_url=args.database_url, workdir=Path(args.workdir), phases=args.phases,
                       kills=args.kills, controllers=args.controllers, extra=args.extra or None,
                       lease_seconds=args.lease_seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
