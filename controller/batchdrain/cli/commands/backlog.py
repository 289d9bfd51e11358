"""Backlog commands: ``enqueue``, ``import``, ``runs``, ``retry``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape

from batchdrain.cli.flags import DB_FIELDS, STORE_FIELDS, key_value, with_settings
from batchdrain.cli.render import out, runs_table
from batchdrain.cli.wiring import open_db
from batchdrain.db import NewPhase
from batchdrain.domain import BadInput, PhaseSpec
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
) -> None:
    """Add one phase to the backlog: batchdrain enqueue --run-id R --phase-id P -- CMD ARGS..."""
    spec = PhaseSpec.from_json({
        "command": command, "image": image, "timeout_seconds": timeout,
        "env": dict(key_value(e) for e in env or []), "memory": memory, "cpu": cpu,
    })
    open_db(settings).enqueue([NewPhase(run_id, phase_id, spec)])
    out.print(f"queued phase [bold]{escape(phase_id)}[/] in run [bold]{escape(run_id)}[/]")


def read_backlog_file(path: Path) -> list[NewPhase]:
    """Parse a YAML or JSON list of phases; any bad row rejects the whole file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc
    try:
        data = yaml.safe_load(raw)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    if isinstance(data, dict) and isinstance(data.get("phases"), list):
        data = data["phases"]
    if not isinstance(data, list):
        raise BadInput(f"{path}: expected a list of phases (or a mapping with 'phases:')")
    phases = []
    for index, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise BadInput(f"{path}: row {index}: expected a mapping, got {type(row).__name__}")
        missing = [k for k in ("run_id", "phase_id", "command") if row.get(k) in (None, "")]
        if missing:
            raise BadInput(f"{path}: row {index}: missing {', '.join(missing)}")
        try:
            spec = PhaseSpec.from_json(row)
        except BadInput as exc:
            raise BadInput(f"{path}: row {index}: {exc}") from exc
        phases.append(NewPhase(str(row["run_id"]), str(row["phase_id"]), spec))
    if not phases:
        raise BadInput(f"{path}: no phases in file")
    return phases


@app.command("import")
@with_settings(STORE_FIELDS)
def import_(settings: Settings, file: Annotated[Path, typer.Argument(help="YAML or JSON list of phases.")]) -> None:
    """Add phases from a file, all or nothing."""
    phases = read_backlog_file(file)
    try:
        count = open_db(settings).enqueue(phases)
    except BadInput as exc:
        raise BadInput(f"{file}: {exc}") from exc
    out.print(f"imported {count} phases into {len({p.run_id for p in phases})} run(s)")


@app.command()
@with_settings(DB_FIELDS)
def runs(settings: Settings) -> None:
    """Phases per run and state."""
    counts = open_db(settings).run_counts()
    out.print(runs_table(counts) if counts else "no runs yet (batchdrain enqueue / batchdrain import)")


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
