"""Running a session: ``drain`` (with ``--dry-run``) and its preflight on its own, ``doctor``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from batchdrain.cli.flags import with_settings
from batchdrain.cli.render import ProgressObserver, checks_table, err, out, print_plan, summary
from batchdrain.cli.wiring import (
    check_capacity,
    choose_executor,
    connect_cluster,
    make_executor,
    open_db,
    open_sink,
    run_preflight,
    serve_metrics,
)
from batchdrain.db import Database, DatabaseUnavailable
from batchdrain.drain import DrainSession, SessionOutcome, make_plan
from batchdrain.drain import dry_run as plan_dry_run
from batchdrain.executors.base import Executor, StopSignal
from batchdrain.logstore import LogSink
from batchdrain.metrics import Metrics
from batchdrain.preflight import PreflightFailed, as_record
from batchdrain.settings import Settings

app = typer.Typer()


@app.command()
@with_settings()
def drain(
    settings: Settings,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and every skip reason; run nothing.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run one drain session: select phases safely, run each, record every attempt."""
    name, why = choose_executor(settings)
    if not dry_run:
        check_capacity(settings, name)  # before the database is opened: nothing written
    db = open_db(settings, migrate=False)
    db.ensure_schema(auto_upgrade=db.backend == "sqlite")
    if dry_run:
        print_plan(plan_dry_run(db, settings))
        return
    make_plan(db, settings)  # bad filters fail here, before anything starts
    sink = open_sink(settings)  # a missing backend or a bad option fails here too
    metrics = Metrics(registry=None)
    if settings.metrics_port:  # a port in use is refused before anything else is said
        serve_metrics(metrics, settings.metrics_port)
    err.print(f"executor: {name} ({why})")
    api = connect_cluster(settings, metrics) if name == "kubernetes" else None
    checks = run_preflight(settings, db, api, sink)
    if not all(c.ok for c in checks):
        raise PreflightFailed(checks)
    executor = make_executor(settings, api)
    stop = StopSignal()
    with _stop_on_signals(stop, grace_seconds=settings.term_grace_seconds):
        outcome = _run_session(settings, db=db, sink=sink, executor=executor, stop=stop, metrics=metrics,
                               quiet=quiet, preflight=as_record(checks))
    _print_outcome(outcome)
    raise typer.Exit(outcome.exit_code)


def _print_outcome(outcome: SessionOutcome) -> None:
    """The summary on stdout; what waits, what was left, leaks and the error on stderr."""
    if outcome.report:  # empty when the database was lost before the report could be written
        out.print(summary(outcome.report))
    for line in outcome.waiting:
        err.print(f"waiting: {escape(line)}", soft_wrap=True)
    if outcome.left_for_adoption:
        err.print(f"interrupted: {len(outcome.left_for_adoption)} attempt(s) left running for the next session "
                  "to adopt: " + ", ".join(outcome.left_for_adoption), soft_wrap=True)
    elif outcome.interrupted:
        err.print("interrupted: every running attempt finished or was recorded within the grace period")
    if outcome.leaks:
        err.print(f"[red]leak audit: {len(outcome.leaks)} object(s) of the session still present:[/] "
                  + ", ".join(outcome.leaks))
    if outcome.error:
        err.print(f"[red]batchdrain: error:[/] {escape(outcome.error)}", soft_wrap=True)


@contextmanager
def _stop_on_signals(stop: StopSignal, *, grace_seconds: float) -> Iterator[None]:
    """SIGTERM and SIGINT stop new phases and give running ones ``grace_seconds``; handlers restored after."""

    def on_term(signum: int, _frame: object) -> None:
        err.print(f"received {signal.Signals(signum).name}: no new phases; collecting running ones for up to "
                  f"{grace_seconds:g}s")
        stop.request(grace_seconds)

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_session(settings: Settings, *, db: Database, sink: LogSink, executor: Executor, stop: StopSignal,
                 metrics: Metrics, quiet: bool, preflight: list[dict[str, Any]]) -> SessionOutcome:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err, disable=quiet) as progress:
        session = DrainSession(db=db, sink=sink, executor=executor, settings=settings,
                               observer=ProgressObserver(progress), stop=stop, metrics=metrics,
                               preflight={"checks": preflight})
        try:
            return session.run()
        except DatabaseUnavailable as exc:
            # Lost after the session began (its start proved the URL good): the
            # controller's failure, exit 1, not the bad input of exit 2.
            err.print(f"[red]batchdrain: error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from exc


@app.command()
@with_settings()
def doctor(settings: Settings) -> None:
    """Check the database, the API URL, the log store and (kubernetes executor) cluster access and RBAC."""
    db = open_db(settings, migrate=False)
    name, why = choose_executor(settings)
    api = connect_cluster(settings, Metrics(registry=None)) if name == "kubernetes" else None
    checks = run_preflight(settings, db, api, open_sink(settings))
    out.print(checks_table(checks, title=f"Preflight (executor {name}: {why})"))
    if not all(c.ok for c in checks):
        raise PreflightFailed(checks)
