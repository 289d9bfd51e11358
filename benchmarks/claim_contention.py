"""Claim latency and lost claims with several controllers on one Postgres backlog (issue 6, issue 15.3).

    PYTHONPATH=controller:. python3 benchmarks/claim_contention.py --phases 100000 --controllers 3 \
        --claims 3000 [--modes one-by-one window window-1] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

Without --postgres-url a throwaway server is started with tests/pgserver.py. For each
mode, a fresh database is filled with ``--phases`` QUEUED phases (one multi-row INSERT
per 20,000), then ``--controllers`` processes, each with its own ``Database`` and
session row, claim all at once until together they hold ``--claims`` phases:

* ``one-by-one``: what sessions did before issue 15 (kept as the worst case): plan a
  batch of 100 (``make_plan``) and claim its phases one by one (``db.claim``). Every
  controller plans the same head of the queue, so most claims lose to another.
* ``window``: what a session does now (``drain/claiming.py``): plan a page, then claim
  up to ``CLAIM_BATCH`` phases per call (as when that many worker slots are free) from
  a window of the next ``WINDOW`` planned phases (``db.claim_some``), skipping the
  phases other controllers hold or are claiming.
* ``window-1``: the same, one phase per call (a session whose slots come free one at
  a time, its steady state).

Prints per mode and controller: claim calls, calls that came back empty ("lost"),
phases claimed, latency per call (won and lost alike); then audits the database: no
phase may have two attempts, and attempts must equal phases claimed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "controller"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from batchdrain.db import AttemptOpening, Database  # noqa: E402
from batchdrain.db.models import PhaseRow, RunRow  # noqa: E402
from batchdrain.domain import Phase  # noqa: E402
from batchdrain.drain import make_plan  # noqa: E402
from batchdrain.drain.claiming import CLAIM_BATCH, PlanCursor  # noqa: E402
from batchdrain.settings import Settings  # noqa: E402

RUNS = 1000
BATCH = 100


def fill(db: Database, size: int) -> float:
    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with db.engine.begin() as conn:
        conn.execute(insert(RunRow), [{"run_id": f"run-{r}", "created_at": now} for r in range(RUNS)])
    for start in range(0, size, 20_000):
        rows = [{"run_id": f"run-{i % RUNS}", "phase_id": f"phase-{i}", "state": "QUEUED",
                 "spec": {"command": ["true"]}, "attempts": 0, "retry_base": 0, "created_at": now,
                 "updated_at": now} for i in range(start, min(size, start + 20_000))]
        with db.engine.begin() as conn:
            conn.execute(insert(PhaseRow), rows)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE phases"))
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Controller:
    url: str
    mode: str
    target: int
    index: int


def controller(job: Controller, barrier: Any, results: Any) -> None:
    db = Database(job.url)
    session = db.create_session(executor="bench", settings={}, identity={})
    claim_phases = claim_one_by_one if job.mode == "one-by-one" else claim_window
    barrier.wait()
    claims, plans, won = claim_phases(db, session, url=job.url, target=job.target, results=results,
                                      batch=1 if job.mode == "window-1" else CLAIM_BATCH)
    db.dispose()
    results["out"].put({"index": job.index, "session": session, "claims": claims, "plans": plans, "won": won})


def claim_one_by_one(db: Database, session: str, *, url: str, target: int, results: Any,
                     batch: int) -> tuple[list[tuple[float, int]], list[float], int]:
    """Plan 100, claim them one by one (sessions before issue 15); ``batch`` is not used."""
    settings = Settings(database_url=url, batch_size=BATCH)
    claims: list[tuple[float, int]] = []
    plans: list[float] = []
    won = 0
    while True:
        t0 = time.perf_counter()
        the_plan = make_plan(db, settings)
        plans.append(time.perf_counter() - t0)
        if not the_plan.selected:
            return claims, plans, won
        for selected in the_plan.selected:
            if claimed_total(results) >= target:
                return claims, plans, won
            t0 = time.perf_counter()
            claim = db.claim(selected.phase, session_id=session, lease_seconds=600, executor="bench",
                             command=["true"], image=None, identity={})
            claims.append((time.perf_counter() - t0, int(claim is not None)))
            if claim is not None:
                won += 1
                add_won(results, 1)


def claim_window(db: Database, session: str, *, url: str, target: int, results: Any,
                 batch: int) -> tuple[list[tuple[float, int]], list[float], int]:
    """Plan a page, claim up to ``batch`` per call from a window of it (sessions now)."""
    settings = Settings(database_url=url)

    def opening(phase: Phase, attempt: int) -> AttemptOpening:
        return AttemptOpening(command=("true",), image=None, identity={"attempt": attempt})

    claims: list[tuple[float, int]] = []
    plans: list[float] = []
    won = 0
    while True:
        t0 = time.perf_counter()
        cursor = PlanCursor(make_plan(db, settings, exclude_session=session).phases)
        plans.append(time.perf_counter() - t0)
        if not cursor:
            return claims, plans, won
        while cursor:
            if claimed_total(results) >= target:
                return claims, plans, won
            window = cursor.window()
            want = min(batch, len(window))
            t0 = time.perf_counter()
            got = db.claim_some(window, want=want, session_id=session, lease_seconds=600, executor="bench",
                                opening=opening)
            claims.append((time.perf_counter() - t0, len(got)))
            cursor.settle(window, {c.phase.created_seq for c in got}, wanted=want)
            won += len(got)
            add_won(results, len(got))


def add_won(results: Any, count: int) -> None:
    with results["lock"]:
        results["won"].value += count


def claimed_total(results: Any) -> int:
    return int(results["won"].value)


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[max(0, int(0.95 * len(ordered)) - 1)] * 1000, "max_ms": ordered[-1] * 1000}


def print_table(mode: str, outs: list[dict[str, Any]], wall: float) -> int:
    """Claim calls per controller and overall, as Markdown table rows; the phases claimed."""
    outs = sorted(outs, key=lambda o: o["index"])
    every: list[tuple[float, int]] = []
    for out in outs:
        every += out["claims"]
        print(_row(mode, str(out["index"] + 1), out["claims"], f"{statistics.median(out['plans']) * 1000:.1f}"))
    won = sum(o["won"] for o in outs)
    print(_row(mode, "all", every, f"wall {wall:.1f} s, {won / wall:.0f} phases/s"))
    return won


def _row(mode: str, who: str, claims: list[tuple[float, int]], last: str) -> str:
    s = stats([seconds for seconds, _ in claims])
    lost = sum(1 for _, got in claims if not got)
    won = sum(got for _, got in claims)
    return (f"| {mode} | {who} | {s['n']:,} | {lost:,} ({100 * lost / s['n']:.1f}%) | {won:,} | "
            f"{s['median_ms']:.2f} | {s['p95_ms']:.2f} | {s['max_ms']:.2f} | {last} |")


def audit(db: Database, *, won: int) -> str:
    """No phase claimed twice, one attempt per phase claimed; exits non-zero otherwise."""
    with db.engine.connect() as conn:
        twice = conn.execute(text("SELECT count(*) FROM (SELECT run_id, phase_id FROM attempts "
                                  "GROUP BY run_id, phase_id HAVING count(*) > 1) AS t")).scalar_one()
        attempts = conn.execute(text("SELECT count(*) FROM attempts")).scalar_one()
        executing = conn.execute(text("SELECT count(*) FROM phases WHERE state = 'EXECUTING'")).scalar_one()
    db.dispose()
    if twice or attempts != won or executing != won:
        raise SystemExit("audit failed: a phase was claimed twice or a claim left no attempt row")
    return f"attempts {attempts:,}, phases EXECUTING {executing:,}, phases with more than one attempt: {twice}"


def run_mode(server_url: str, mode: str, args: argparse.Namespace) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    db.upgrade()
    fill_s = fill(db, args.phases)
    print(f"{mode}: filled {args.phases:,} phases in {fill_s:.1f}s", file=sys.stderr)
    ctx = mp.get_context("spawn")
    results = {"won": ctx.Value("i", 0), "lock": ctx.Lock(), "out": ctx.Queue()}
    barrier = ctx.Barrier(args.controllers)
    procs = [ctx.Process(target=controller, args=(Controller(url, mode, args.claims, i), barrier, results))
             for i in range(args.controllers)]
    t0 = time.perf_counter()
    for proc in procs:
        proc.start()
    outs = [results["out"].get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join(timeout=60)
    won = print_table(mode, outs, wall)
    return f"{mode}: {audit(db, won=won)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100_000)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--claims", type=int, default=3000, help="stop when this many phases are claimed")
    parser.add_argument("--postgres-url", help="a server URL; a fresh database is created on it")
    parser.add_argument("--modes", nargs="+", choices=("one-by-one", "window", "window-1"),
                        default=["one-by-one", "window", "window-1"])
    args = parser.parse_args()
    server = None
    server_url = args.postgres_url
    if not server_url:
        from tests.pgserver import start_postgres

        server = start_postgres()
        server_url = server.url
    try:
        print("| mode | controller | claim calls | lost (empty) | phases claimed | claim median (ms) | p95 (ms) |"
              " max (ms) | plan median (ms) |")
        print("|---|---|---|---|---|---|---|---|---|")
        audits = [run_mode(server_url, mode, args) for mode in args.modes]
        print()
        for line in audits:
            print(line)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
