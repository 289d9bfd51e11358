"""The forecast's error on a rerun of a drained backlog: estimate vs actual (issue 18.5).

    PYTHONPATH=controller:. python benchmarks/forecast_error.py --phases 60 --parallelism 4

A backlog of phases that sleep for seeded random times (0.2-3 s, a few 8 s) in three runs
is drained once with the local executor (SQLite), then every phase is queued again (as a
rerun would: state QUEUED, attempt budget restarted), the dry run's forecast is read
(every phase estimated by its own past attempt), and the backlog is drained again. Prints
the forecast, the second session's wall time (from its row: start to end, report
included) and the error. A second estimate is made from run medians only (each phase's
own history hidden) to show what that basis is worth.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from batchdrain.db import Database, NewPhase
from batchdrain.db.models import PhaseRow
from batchdrain.domain import PhaseSpec, PhaseState
from batchdrain.drain.planning import dry_run
from batchdrain.forecast import DurationHistory, Forecast
from batchdrain.settings import Settings


def backlog(phases: int, seed: int) -> list[NewPhase]:
    rng = random.Random(seed)
    rows = []
    for i in range(phases):
        seconds = 8.0 if rng.random() < 0.05 else round(rng.uniform(0.2, 3.0), 2)
        rows.append(NewPhase(f"run-{i % 3}", f"p{i:04d}", PhaseSpec(command=("sleep", str(seconds)))))
    return rows


def drain(url: str, workdir: Path, parallelism: int) -> None:
    subprocess.run([sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", url, "--executor", "local",
                    "--parallelism", str(parallelism), "--quiet", "--log-store", str(workdir / "logs")],
                   check=True, cwd=workdir, capture_output=True,
                   env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "controller"), "PATH": "/usr/bin:/bin"})


def session_seconds(db: Database) -> float:
    with db.engine.connect() as conn:
        started, ended = conn.execute(text(
            "SELECT started_at, ended_at FROM drain_sessions ORDER BY started_at DESC LIMIT 1")).one()
    if isinstance(started, str):  # SQLite hands back text through a plain text() query
        import datetime as dt

        started, ended = dt.datetime.fromisoformat(started), dt.datetime.fromisoformat(ended)
    return float((ended - started).total_seconds())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=60)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="batchdrain-forecast-"))
    url = f"sqlite:///{workdir / 'backlog.db'}"
    db = Database(url)
    db.upgrade()
    db.enqueue(backlog(args.phases, args.seed))
    drain(url, workdir, args.parallelism)
    first = session_seconds(db)
    with db.engine.begin() as conn:  # the rerun: every phase queued again, its budget restarted
        conn.execute(update(PhaseRow).values(state=PhaseState.QUEUED.value, retry_base=PhaseRow.attempts))
    settings = Settings(database_url=url, parallelism=args.parallelism)
    forecast = dry_run(db, settings).forecast
    per_run, overall = db.duration_medians()
    by_run = Forecast(parallelism=args.parallelism, history=DurationHistory(run_medians=per_run,
                                                                            overall_median=overall))
    for standing in db.standings():
        by_run.add(standing.run_id, None)
    drain(url, workdir, args.parallelism)
    actual = session_seconds(db)
    estimate = forecast.seconds or 0.0
    print(f"phases {args.phases}, parallelism {args.parallelism}, first drain {first:.1f} s")
    print(forecast.line())
    print(f"estimate {estimate:.1f} s, actual {actual:.1f} s, error {(estimate - actual) / actual:+.1%}")
    run_estimate = by_run.seconds or 0.0
    print(f"from run medians only: estimate {run_estimate:.1f} s, error {(run_estimate - actual) / actual:+.1%}")
    db.dispose()


if __name__ == "__main__":
    main()
