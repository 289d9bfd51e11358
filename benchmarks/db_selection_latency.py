"""Selection and claim latency against backlog size, on SQLite and Postgres.

    python benchmarks/db_selection_latency.py --sizes 10000 100000 1000000 \
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres

For each size a fresh database is filled with that many QUEUED phases (plus 10% FAILED
ones spread over 1,000 runs), then we time what a session does: plan a batch of 100
(``make_plan``: two indexed queries) and claim those 100 phases one by one (each claim
is one transaction: lock, conditional update, attempt row), and plan a page of 10,000 (what a
session without a batch size reads), and, on a schema with priorities, the single window
query that would give the fair order directly (for comparison). Prints a markdown table and
the query plans (EXPLAIN) of the candidate queries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

import psycopg
from sqlalchemy import insert, inspect, text

from batchdrain.db import Database
from batchdrain.db.models import PhaseRow, RunRow
from batchdrain.drain import make_plan
from batchdrain.settings import Settings

RUNS = 1000


def fill(db: Database, size: int) -> None:
    now = dt.datetime.now(dt.UTC)
    spec = {"command": ["true"]}
    with db.engine.begin() as conn:
        conn.execute(insert(RunRow), [{"run_id": f"run-{r}", "created_at": now} for r in range(RUNS)])
    chunk = 20_000
    for start in range(0, size, chunk):
        rows = [
            {"run_id": f"run-{i % RUNS}", "phase_id": f"phase-{i}", "state": "FAILED" if i % 10 == 0 else "QUEUED",
             "spec": spec, "attempts": 1 if i % 10 == 0 else 0, "retry_base": 0, "created_at": now,
             "updated_at": now}
            for i in range(start, min(size, start + chunk))
        ]
        with db.engine.begin() as conn:
            conn.execute(insert(PhaseRow), rows)
    if db.backend == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE phases"))


def explain(db: Database) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if db.backend == "sqlite" else "EXPLAIN "
    queries = [
        "SELECT id FROM phases WHERE state = 'QUEUED' AND attempts - retry_base < 3 ORDER BY id LIMIT 100",
        "SELECT id FROM phases p WHERE state IN ('FAILED') AND attempts - retry_base < 3 AND NOT EXISTS "
        "(SELECT 1 FROM phases q WHERE q.run_id = p.run_id AND q.state = 'QUEUED') "
        "ORDER BY attempts - retry_base, id LIMIT 100",
        # The claim (``_CLAIM_PHASES`` in db/claims.py, values inlined): up to 8 of a
        # window of 64 planned ids, the rows locked in a CTE by the primary key.
        "WITH picked AS " + ("" if db.backend == "sqlite" else "MATERIALIZED ")
        + "(SELECT id FROM phases WHERE id IN (" + ", ".join(str(i) for i in range(1, 65)) + ") "
        "AND state = 'QUEUED' AND (lease_owner IS NULL OR lease_expires_at < CURRENT_TIMESTAMP) ORDER BY id LIMIT 8"
        + ("" if db.backend == "sqlite" else " FOR UPDATE SKIP LOCKED")
        + ") UPDATE phases SET state = 'EXECUTING', attempts = attempts + 1, lease_owner = 'bench' "
        "WHERE id IN (SELECT id FROM picked) AND state = 'QUEUED' "
        "AND (lease_owner IS NULL OR lease_expires_at < CURRENT_TIMESTAMP) RETURNING id, attempts",
    ]
    lines = []
    with db.engine.connect() as conn:
        for query in queries:
            lines.append(f"-- {query}")
            lines += ["   " + " ".join(str(c) for c in row) for row in conn.execute(text(prefix + query))]
    return lines


# The fair order by one window function over the backlog (the alternative ``db.fairness``
# avoids): the ids of a page of 10,000, no specs.
WINDOW_QUERY = (
    "WITH ranked AS (SELECT id, priority, run_id, ROW_NUMBER() OVER (PARTITION BY priority, run_id ORDER BY id) AS rk"
    " FROM phases WHERE state = 'QUEUED' AND attempts - retry_base < 3)"
    " SELECT r.id FROM ranked r JOIN runs ON runs.run_id = r.run_id"
    " ORDER BY r.priority DESC, (r.rk - 1) / runs.weight, r.run_id, r.id LIMIT 10000")


def window_ms(db: Database) -> float | None:
    """Median of 3 runs of ``WINDOW_QUERY``; None on a schema without priorities."""
    with db.engine.connect() as conn:
        columns = [c["name"] for c in inspect(conn).get_columns("phases")]
        if "priority" not in columns:
            return None
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            conn.execute(text(WINDOW_QUERY)).all()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(url: str, size: int) -> dict[str, float]:
    db = Database(url)
    db.upgrade()
    t0 = time.perf_counter()
    fill(db, size)
    fill_s = time.perf_counter() - t0
    settings = Settings(database_url=url, batch_size=100)
    plans = []
    for _ in range(5):
        t0 = time.perf_counter()
        the_plan = make_plan(db, settings)
        plans.append(time.perf_counter() - t0)
    # A session without --batch-size reads pages of 10,000 (drain.planning.PAGE).
    pages = []
    for _ in range(3):
        t0 = time.perf_counter()
        make_plan(db, Settings(database_url=url))
        pages.append(time.perf_counter() - t0)
    session = db.create_session(executor="bench", settings={}, identity={})
    claims = []
    for selected in the_plan.selected:
        t0 = time.perf_counter()
        claim = db.claim(selected.phase, session_id=session, lease_seconds=60, executor="bench",
                         command=["true"], image=None, identity={})
        claims.append(time.perf_counter() - t0)
        assert claim is not None
    result = {"size": size, "fill_s": fill_s, "plan_ms": statistics.median(plans) * 1000,
              "page_ms": statistics.median(pages) * 1000, "window_ms": window_ms(db) or float("nan"),
              "claim_median_ms": statistics.median(claims) * 1000,
              "claim_p95_ms": sorted(claims)[int(0.95 * len(claims)) - 1] * 1000}
    plan_lines = explain(db)
    db.dispose()
    result["explain"] = plan_lines  # type: ignore[assignment]
    return result


def postgres_database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--postgres-url", help="a server URL; a fresh database is created per size")
    parser.add_argument("--workdir", default="/tmp/batchdrain-bench")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        targets = [("sqlite", f"sqlite:///{args.workdir}/bench-{size}-{uuid.uuid4().hex[:6]}.db")]
        if args.postgres_url:
            targets.append(("postgres", postgres_database(args.postgres_url)))
        for backend, url in targets:
            result = measure(url, size)
            rows.append((backend, result))
            print(f"{backend} {size}: plan {result['plan_ms']:.1f} ms, page {result['page_ms']:.1f} ms, "
                  f"claim median {result['claim_median_ms']:.2f}"
                  f" ms p95 {result['claim_p95_ms']:.2f} ms (fill {result['fill_s']:.1f}s)", file=sys.stderr)
    print("| backend | phases | plan batch of 100 (ms, median of 5) | plan page of 10,000 (ms, median of 3) "
          "| one window query, page of 10,000 ids (ms) | claim median (ms) | claim p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for backend, r in rows:
        print(f"| {backend} | {r['size']:,} | {r['plan_ms']:.1f} | {r['page_ms']:.1f} | {r['window_ms']:.1f} | "
              f"{r['claim_median_ms']:.2f} | {r['claim_p95_ms']:.2f} |")
    print()
    for backend, r in rows:
        print(f"EXPLAIN ({backend}, {r['size']:,} phases):")
        print("\n".join(r["explain"]))  # type: ignore[arg-type]
        print()


if __name__ == "__main__":
    main()
