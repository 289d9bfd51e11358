"""Claim latency with several controllers on one Postgres backlog (issue 6, SPEC criterion 7).

    PYTHONPATH=controller:. python3 benchmarks/claim_contention.py --phases 100000 --controllers 3 \
        --claims 3000 [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

Without --postgres-url a throwaway server is started with tests/pgserver.py. A fresh
database is filled with ``--phases`` QUEUED phases (one multi-row INSERT per 20,000),
then ``--controllers`` processes, each with its own ``Database`` and session row, do
what a drain session does, all at once: plan a batch of 100 (``make_plan``) and claim
its phases one by one, until the controllers together hold ``--claims`` phases. Every
controller plans the same head of the queue, so most of its claims lose to another
controller (``None``): the worst case for contention. Prints claim latency per
controller and overall (won and lost claims alike), then audits the database: no phase
may have two attempts, and attempts must equal claims won.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "controller"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from batchdrain.db import Database  # noqa: E402
from batchdrain.db.models import PhaseRow, RunRow  # noqa: E402
from batchdrain.drain import make_plan  # noqa: E402
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


def controller(url: str, target: int, barrier: Any, results: Any, index: int) -> None:
    db = Database(url)
    session = db.create_session(executor="bench", settings={}, identity={})
    settings = Settings(database_url=url, batch_size=BATCH)
    claims: list[float] = []
    plans: list[float] = []
    won = 0
    barrier.wait()
    while True:
        t0 = time.perf_counter()
        the_plan = make_plan(db, settings)
        plans.append(time.perf_counter() - t0)
        if not the_plan.selected:
            break
        for selected in the_plan.selected:
            if claimed_total(results) >= target:
                break
            t0 = time.perf_counter()
            claim = db.claim(selected.phase, session_id=session, lease_seconds=600, executor="bench",
                             command=["true"], image=None, identity={})
            claims.append(time.perf_counter() - t0)
            if claim is not None:
                won += 1
                with results["lock"]:
                    results["won"].value += 1
        else:
            continue
        break
    db.dispose()
    results["out"].put({"index": index, "session": session, "claims": claims, "plans": plans, "won": won})


def claimed_total(results: Any) -> int:
    return int(results["won"].value)


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[max(0, int(0.95 * len(ordered)) - 1)] * 1000, "max_ms": ordered[-1] * 1000}


def print_table(outs: list[dict[str, Any]]) -> int:
    """Claim latency per controller and overall, as a Markdown table; the claims won."""
    outs = sorted(outs, key=lambda o: o["index"])
    print("| controller | claim calls | won | lost | claim median (ms) | p95 (ms) | max (ms) | "
          "plan median (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    every: list[float] = []
    for out in outs:
        s = stats(out["claims"])
        every += out["claims"]
        print(f"| {out['index'] + 1} | {s['n']:,} | {out['won']:,} | {s['n'] - out['won']:,} | "
              f"{s['median_ms']:.2f} | {s['p95_ms']:.2f} | {s['max_ms']:.2f} | "
              f"{statistics.median(out['plans']) * 1000:.1f} |")
    s = stats(every)
    won = sum(o["won"] for o in outs)
    print(f"| all | {s['n']:,} | {won:,} | {s['n'] - won:,} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | "
          f"{s['max_ms']:.2f} | |")
    return won


def audit(db: Database, *, won: int, wall: float) -> None:
    """No phase claimed twice, one attempt per claim won; exits non-zero otherwise."""
    with db.engine.connect() as conn:
        twice = conn.execute(text("SELECT count(*) FROM (SELECT run_id, phase_id FROM attempts "
                                  "GROUP BY run_id, phase_id HAVING count(*) > 1) AS t")).scalar_one()
        attempts = conn.execute(text("SELECT count(*) FROM attempts")).scalar_one()
        executing = conn.execute(text("SELECT count(*) FROM phases WHERE state = 'EXECUTING'")).scalar_one()
    print()
    print(f"wall {wall:.1f}s for {won:,} claims ({won / wall:.0f} claims/s won); attempts {attempts:,}, "
          f"phases EXECUTING {executing:,}, phases with more than one attempt: {twice}")
    db.dispose()
    if twice or attempts != won or executing != won:
        raise SystemExit("audit failed: a phase was claimed twice or a claim left no attempt row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100_000)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--claims", type=int, default=3000, help="stop when this many phases are claimed")
    parser.add_argument("--postgres-url", help="a server URL; a fresh database is created on it")
    args = parser.parse_args()
    server = None
    server_url = args.postgres_url
    if not server_url:
        from tests.pgserver import start_postgres

        server = start_postgres()
        server_url = server.url
    try:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = server_url.rsplit("/", 1)[0] + f"/{name}"
        db = Database(url)
        db.upgrade()
        fill_s = fill(db, args.phases)
        print(f"filled {args.phases:,} phases in {fill_s:.1f}s", file=sys.stderr)
        ctx = mp.get_context("spawn")
        results = {"won": ctx.Value("i", 0), "lock": ctx.Lock(), "out": ctx.Queue()}
        barrier = ctx.Barrier(args.controllers)
        procs = [ctx.Process(target=controller, args=(url, args.claims, barrier, results, i))
                 for i in range(args.controllers)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        outs = [results["out"].get(timeout=1800) for _ in procs]
        wall = time.perf_counter() - t0
        for proc in procs:
            proc.join(timeout=60)
        won = print_table(outs)
        audit(db, won=won, wall=wall)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
