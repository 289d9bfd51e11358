"""Cost per phase as the backlog grows, with the fake Kubernetes seam (issue 7.3).

Runs ``kube_executor_overhead.py`` once per (mode, N), each in a fresh process so that
peak RSS is that run's own, and writes one JSON file per run to ``--outdir``. Then it
prints a markdown table and draws ``--plot``: CPU per phase (controller and fake),
peak RSS and DB rows written per phase against N, on a log x axis, so a flat line
means a constant cost per phase.

Modes (see ``kube_executor_overhead.py`` for what each figure is):

* ``executor``: the Kubernetes executor alone, as the drain loop drives it.
* ``drain``: the full ``DrainSession`` on a SQLite file, which adds the database work
  and the end-of-session report, and gives the DB rows written per phase.

    PYTHONPATH=controller:. python benchmarks/scale_fake_seam.py \\
        [--phases 1000 10000 100000] [--modes executor drain] [--parallelism 100] \\
        [--outdir benchmarks/scale] [--plot benchmarks/scale_fake_seam.png] [--render-only]

``--render-only`` skips the runs and renders the table and plot from the JSON files
already in ``--outdir`` (so long runs can be made separately, or in parallel, with
``kube_executor_overhead.py --json``).

A parallelism sweep (issue 15.4): ``--parallelism 100 500 1000 --waves 10
--run-seconds 2`` runs ``waves x P`` phases at each P, pods that run 2 s each (so that
P attempts really run at once, their log follows open), and the table gains the peak
thread counts. ``--side-by-side DIR`` runs each configuration a second time *at the
same time* with ``DIR`` (another checkout's ``controller/``) first on the path, for a
before/after on a shared machine; those rows are tagged ``before``. The plot is drawn
for a sweep over N at one P only.

    PYTHONPATH=controller:. python benchmarks/scale_fake_seam.py --modes executor drain \\
        --parallelism 100 500 1000 --waves 10 --run-seconds 2 --outdir /tmp/sweep \\
        [--side-by-side /path/to/old/controller]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _start(mode: str, phases: int, parallelism: int, out: Path, *, run_seconds: float,
           controller: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(controller), str(ROOT)])}
    command = [sys.executable, str(HERE / "kube_executor_overhead.py"), "--mode", mode, "--phases", str(phases),
               "--parallelism", str(parallelism), "--run-seconds", str(run_seconds), "--json", str(out)]
    print(f"running {mode} with {phases:,} phases at P={parallelism} ({controller})...", file=sys.stderr, flush=True)
    return subprocess.Popen(command, env=env, cwd=ROOT)


def _run(mode: str, phases: int, parallelism: int, outdir: Path, *, run_seconds: float,
         before: Path | None) -> None:
    name = f"{mode}-{phases}" + (f"-p{parallelism}-s{run_seconds:g}" if run_seconds or parallelism != 100 else "")
    runs = [(outdir / f"{name}.json", ROOT / "controller")]
    if before is not None:
        runs.append((outdir / f"{name}-before.json", before))
    started = [_start(mode, phases, parallelism, out, run_seconds=run_seconds, controller=c) for out, c in runs]
    for process in started:
        # The exit status says whether the targets were met; the figures are wanted either way.
        process.wait()
    for out, _ in runs:
        if not out.exists():
            raise SystemExit(f"{mode} {phases}: no results written to {out}")
        if before is not None:
            figures = json.loads(out.read_text())
            figures["tag"] = "before" if out.stem.endswith("-before") else "after"
            out.write_text(json.dumps(figures, indent=2))


def _load(outdir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted(outdir.glob("*.json"))]
    return sorted(rows, key=lambda r: (r["mode"] != "executor", r.get("parallelism", 100), r["phases"],
                                       r.get("tag", "")))


def _rows(written: int | dict[str, int]) -> int:
    """Rows written; results before the change counter were rowcounts by statement kind."""
    return written if isinstance(written, int) else sum(written.values())


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | P | phases | pods run | CPU/phase total | controller | fake | peak RSS (before the report)"
        " | peak threads (kernel) | DB rows written/phase | DB transactions/phase | DB statements/phase | phases/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        threads = f"{r['peak_threads_active']} ({r['peak_threads_kernel']})" if "peak_threads_active" in r else "n/a"
        written = r.get("rows_written")
        per_phase = f"{_rows(written) / r['phases']:.2f}" if written else "n/a (no DB)"
        before = r.get("peak_rss_mb_before_report")
        rss = f"{r['peak_rss_mb']:.0f} MB" + (f" ({before:.0f} MB)" if before is not None else "")
        tag = f" ({r['tag']})" if r.get("tag") else ""
        # Runs before the transaction counter have neither figure.
        transactions = f"{r['transactions'] / r['phases']:.2f}" if "transactions" in r else "n/a"
        statements = f"{sum(r['all_statements'].values()) / r['phases']:.2f}" if "all_statements" in r else "n/a"
        lines.append(
            f"| {r['mode']}{tag} | {r.get('parallelism', 100):,} | {r['phases']:,} | {r.get('run_seconds', 0):g} s"
            f" | {r['cpu_total_ms_per_phase']:.2f} ms"
            f" | {r['cpu_controller_ms_per_phase']:.2f} ms | {r['cpu_fake_ms_per_phase']:.2f} ms"
            f" | {rss} | {threads} | {per_phase} | {transactions} | {statements} | {r['phases_per_s']:.0f} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, rss_ax, db_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    for mode, style in (("executor", "o-"), ("drain", "s--")):
        runs = [r for r in rows if r["mode"] == mode]
        if not runs:
            continue
        n = [r["phases"] for r in runs]
        controller = [r["cpu_controller_ms_per_phase"] for r in runs]
        cpu_ax.plot(n, controller, style, label=f"{mode}: controller")
        for x, y in zip(n, controller, strict=True):
            cpu_ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        cpu_ax.plot(n, [r["cpu_fake_ms_per_phase"] for r in runs], style, alpha=0.4, label=f"{mode}: fake")
        rss_ax.plot(n, [r["peak_rss_mb"] for r in runs], style, label=mode)
        before = [(r["phases"], r["peak_rss_mb_before_report"]) for r in runs if "peak_rss_mb_before_report" in r]
        if before:
            rss_ax.plot([b[0] for b in before], [b[1] for b in before], ":", label=f"{mode}: before the report")
        for r in runs:
            rss_ax.annotate(f"{r['peak_rss_mb']:.0f}", (r["phases"], r["peak_rss_mb"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        if mode == "drain":
            db_ax.plot(n, [_rows(r["rows_written"]) / r["phases"] for r in runs], style,
                       label="rows written (SQLite changes)")
            db_ax.plot(n, [sum(r["statements"].values()) / r["phases"] for r in runs], ":", label="write statements")
    cpu_ax.axhline(2.0, color="red", linewidth=0.8, label="target 2 ms")
    # The drain mode's database work is ten times the executor's cost: a log scale keeps
    # both readable.
    rss_ax.axhline(150, color="red", linewidth=0.8, label="target 150 MB (at 10k)")
    for ax, title, unit in ((cpu_ax, "CPU per phase", "ms (log scale)"), (rss_ax, "peak RSS", "MB"),
                            (db_ax, "DB writes per phase (drain, SQLite)", "per phase")):
        ax.set_xscale("log")
        ax.set_xlim(500, 200_000)
        ax.set_xlabel("phases (parallelism 100)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.3)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    cpu_ax.set_yscale("log")
    cpu_ax.set_ylim(0.3, 60)
    fig.suptitle("batchdrain with the fake Kubernetes seam: cost per phase against backlog size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=("executor", "drain"), default=["executor", "drain"])
    parser.add_argument("--parallelism", type=int, nargs="+", default=[100])
    parser.add_argument("--waves", type=int, help="phases = waves x P at each P (instead of --phases)")
    parser.add_argument("--run-seconds", type=float, default=0.0, help="how long each pod runs")
    parser.add_argument("--side-by-side", type=Path, metavar="CONTROLLER_DIR",
                        help="run each configuration with this controller/ too, at the same time")
    parser.add_argument("--outdir", type=Path, default=HERE / "scale")
    parser.add_argument("--plot", type=Path, default=HERE / "scale_fake_seam.png")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        for mode in args.modes:
            for parallelism in args.parallelism:
                for phases in [args.waves * parallelism] if args.waves else args.phases:
                    _run(mode, phases, parallelism, args.outdir, run_seconds=args.run_seconds,
                         before=args.side_by_side)
    rows = _load(args.outdir)
    if not rows:
        raise SystemExit(f"no results in {args.outdir}")
    print(_table(rows))
    if len({r.get("parallelism", 100) for r in rows}) == 1 and not (args.side_by_side or args.waves):
        _plot(rows, args.plot)
        print(f"\nplot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
