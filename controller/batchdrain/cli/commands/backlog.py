"""Backlog commands: ``enqueue``, ``import``, ``runs``, ``retry``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from batchdrain.cli.flags import DB_FIELDS, STORE_FIELDS, key_value, with_settings
from batchdrain.cli.render import out, runs_table
from batchdrain.cli.wiring import open_db
from batchdrain.db import NewPhase
from batchdrain.domain import BadInput, PhaseSpec
from batchdrain.drain import dry_run as plan_dry_run
from batchdrain.importing import BacklogFile, BadBacklogFile
from batchdrain.importing.schedule import schedule_fields
from batchdrain.phase_limits import host_arg_max, phase_problem
from batchdrain.settings import Settings

app = typer.Typer()


@app.command()
@with_settings(STORE_FIELDS)
def enqueue(  # noqa: PLR0917 - typer maps parameters to flags
    settings: Settings,
    command: Annotated[list[str], typer.Argument(help="Command and arguments (after --).")],
    run_id: Annotated[str, typer.Option("--run-id", help="Run the phase belongs to.")],
    phase_id: Annotated[str, typer.Option("--phase-id", help="Phase id, unique in its run.")],
    image: Annotated[str | None, typer.Option(help="Container image (Kubernetes).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Timeout in seconds.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the phase.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256Mi.")] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU request/limit, e.g. 500m.")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first (default 0).")] = None,
    run_weight: Annotated[int | None, typer.Option(
        help="Phases of this run per round when runs take turns (default 1); sets the run's weight.")] = None,
    needs: Annotated[list[str] | None, typer.Option(
        "--needs", help="A phase of the same run that must be COMPLETE first (repeatable).")] = None,
    queue: Annotated[str | None, typer.Option(
        help="Kueue LocalQueue of this phase's Jobs (overrides --queue-name).")] = None,
    priority_class: Annotated[str | None, typer.Option(
        help="priorityClassName of this phase's pods (overrides --priority-class-name).")] = None,
    workload_priority_class: Annotated[str | None, typer.Option(
        help="Kueue WorkloadPriorityClass of this phase's Jobs (overrides --workload-priority-class).")] = None,
) -> None:
    """Add one phase to the backlog: batchdrain enqueue --run-id R --phase-id P -- CMD ARGS..."""
    spec = PhaseSpec.from_json({
        "command": command, "image": image, "timeout_seconds": timeout,
        "env": dict(key_value(e) for e in env or []), "memory": memory, "cpu": cpu, "queue": queue,
        "priority_class": priority_class, "workload_priority_class": workload_priority_class,
    })
    schedule = schedule_fields({"priority": priority, "run_weight": run_weight, "needs": needs})
    # Refused before the database is opened: a bad phase leaves not even a schema behind.
    problem = phase_problem(run_id, phase_id, spec=spec, arg_max=host_arg_max())
    if problem:
        raise BadInput(problem)
    open_db(settings).enqueue([NewPhase(run_id, phase_id, spec, **schedule)])
    out.print(f"queued phase [bold]{escape(phase_id)}[/] in run [bold]{escape(run_id)}[/]")


@app.command("import")
@with_settings(STORE_FIELDS)
def import_(settings: Settings, file: Annotated[Path, typer.Argument(
        help="Phases as a YAML or JSON list, or JSON Lines (.jsonl / .ndjson).")]) -> None:
    """Add phases from a file, all or nothing; the file is streamed, not held in memory."""
    source = BacklogFile(file)
    try:
        counts = open_db(settings).enqueue_stream(source.phases)
    except BadBacklogFile:
        raise
    except BadInput as exc:
        raise BadInput(f"{file}: {exc}") from exc
    out.print(f"imported {counts.phases} phases ({counts.new_runs} new run(s))")


# What ``runs`` forecasts with: the selection a drain with these flags would make.
FORECAST_FIELDS = (*DB_FIELDS, "parallelism", "batch_size", "max_attempts", "skip_runs_with_queued",
                   "include_parked", "run_id")


@app.command()
@with_settings(FORECAST_FIELDS)
def runs(settings: Settings, forecast: Annotated[bool, typer.Option(
        help="Also estimate how long draining what a session would select takes at --parallelism "
             "(walks the backlog once, as --dry-run does: seconds on 10^6 phases).")] = False,
         ) -> None:
    """Phases per run and state, and how long draining what a session would select takes."""
    db = open_db(settings)
    counts = db.run_counts()
    out.print(runs_table(counts) if counts else "no runs yet (batchdrain enqueue / batchdrain import)")
    if counts and forecast:
        out.print(plan_dry_run(db, settings).forecast.line(), soft_wrap=True)


@app.command()
@with_settings(DB_FIELDS)
def retry(
    settings: Settings,
    run_id: Annotated[list[str] | None, typer.Option("--run-id", help="Only these runs.")] = None,
    phase_id: Annotated[list[str] | None, typer.Option("--phase-id", help="Only these phases.")] = None,
    include_failed: Annotated[bool, typer.Option(help="Also re-queue FAILED phases.")] = False,
) -> None:
    """Put parked phases (and with --include-failed, failed ones) back in the queue."""
    db = open_db(settings)
    if run_id:
        from batchdrain.selection import check_run_filter

        check_run_filter(run_id, db.known_runs())
    count = db.retry_phases(run_ids=run_id or [], phase_ids=phase_id or [], include_failed=include_failed)
    out.print(f"re-queued {count} phase(s)")
