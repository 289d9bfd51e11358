"""The ``batchdrain`` command line (also ``kubectl batchdrain``).

Every ``Settings`` field becomes a ``--flag`` here automatically, so an option can
never exist as a ``BATCHDRAIN_*`` variable and be missing on the command line.
Exit codes: 0 the command did its job (a drain ran, even if phases failed); 1 the
controller itself failed or left Jobs behind; 2 bad usage or bad input.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from batchdrain import __version__
from batchdrain.db import AttemptRecord, Database, DatabaseUnavailable, NewPhase, SessionRecord
from batchdrain.domain import AttemptResult, BadInput, Phase, PhaseSpec, utcnow
from batchdrain.drain import DrainSession, SessionOutcome, make_plan
from batchdrain.executors.base import Executor, StopSignal
from batchdrain.executors.local import LocalExecutor
from batchdrain.identity import mask_secrets
from batchdrain.kube import KubeApi, KubeError
from batchdrain.logstore import LogSink, log_key, open_log_sink
from batchdrain.metrics import Metrics
from batchdrain.preflight import Check, PreflightFailed, as_record, check_api_url, check_cluster, check_database
from batchdrain.report import render_markdown
from batchdrain.report_html import render_html
from batchdrain.selection import Plan
from batchdrain.settings import Settings

app = typer.Typer(
    name="batchdrain", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Drain a backlog of phases: one Kubernetes Job (or local process) per attempt, every attempt recorded.",
)
sessions_app = typer.Typer(no_args_is_help=True, help="Drain sessions.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")

_resources = contextlib.ExitStack()
out = Console()
err = Console(stderr=True)

class ReportFormat(StrEnum):
    JSON = "json"
    MD = "md"
    HTML = "html"


class LogStream(StrEnum):
    ALL = "all"
    STDOUT = "stdout"
    STDERR = "stderr"
    COMBINED = "combined"


DB_FIELDS = ("database_url", "retry_attempts", "retry_max_seconds")
STORE_FIELDS = (*DB_FIELDS, "log_store")


# -- settings as flags -------------------------------------------------------------
def _cli_type(annotation: Any) -> Any:
    """The type typer should parse for a settings field (always optional: None = not given)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if origin is Literal:
        return str | None
    if origin is list and get_args(annotation) == (str,):
        return list[str] | None
    if origin in (list, dict):
        return str | None  # JSON or K=V list, parsed below
    return annotation | None


def _settings_parameters(fields: Sequence[str] | None) -> list[inspect.Parameter]:
    params = []
    for name, info in Settings.model_fields.items():
        if fields is not None and name not in fields:
            continue
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if info.annotation is bool else [flag]
        env = f"BATCHDRAIN_{name.upper()}"
        option = typer.Option(None, *decls, help=f"{info.description} [env: {env}]", show_default=False,
                              rich_help_panel="Settings")
        annotation = bool | None if info.annotation is bool else _cli_type(info.annotation)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation))
    return params


def _parse_override(name: str, value: Any) -> Any:
    annotation = Settings.model_fields[name].annotation
    if get_origin(annotation) is dict or annotation == dict[str, str]:
        pairs = [p for p in str(value).split(",") if p]
        return dict(_key_value(p) for p in pairs)
    if get_origin(annotation) is list and get_args(annotation) != (str,):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadInput(f"--{name.replace('_', '-')} must be JSON: {exc}") from exc
    return value


def load_settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**{k: _parse_override(k, v) for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise BadInput(f"invalid setting {where}: {first['msg']}") from exc


def with_settings(fields: Sequence[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one flag per settings field; it receives a built ``Settings`` first."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        extra = _settings_parameters(fields)
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(load_settings(overrides), **kwargs)

        wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper

    return decorate


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BadInput(f"expected KEY=VALUE, got {text!r}")
    return key, value


def open_db(settings: Settings, *, migrate: bool = True) -> Database:
    db = Database(settings.database_url, retry_attempts=settings.retry_attempts,
                  retry_max_seconds=settings.retry_max_seconds)
    # Pooled connections are closed when the command ends, not left to the garbage collector.
    _resources.callback(db.dispose)
    if migrate:
        db.ensure_schema(auto_upgrade=False)
    return db


# -- commands -------------------------------------------------------------------------
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
        "env": dict(_key_value(e) for e in env or []), "memory": memory, "cpu": cpu,
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
    table = Table("run", "queued", "executing", "complete", "failed", "parked", title="Runs")
    for run_id, c in counts.items():
        table.add_row(escape(run_id), str(c.queued), str(c.executing), str(c.complete), str(c.failed),
                      str(c.skipped))
    out.print(table if counts else "no runs yet (batchdrain enqueue / batchdrain import)")


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


@db_app.command("upgrade")
@with_settings(DB_FIELDS)
def db_upgrade(settings: Settings) -> None:
    """Create or migrate the schema to the current revision."""
    db = open_db(settings, migrate=False)
    revision = db.upgrade()
    out.print(f"database {escape(db.masked_url())} at revision {revision}")


@sessions_app.command("list")
@with_settings(DB_FIELDS)
def sessions_list(settings: Settings, limit: Annotated[int, typer.Option(help="How many.")] = 20) -> None:
    """Recent drain sessions."""
    table = Table("status", "executor", "started", "attempts", "ok", "failed", title="Sessions")
    # Ids are what people copy into the next command: never truncated or wrapped.
    table.columns.insert(0, Column("session", no_wrap=True, min_width=len("batch-drain-20260101-000000")))
    for s in open_db(settings).sessions(limit):
        c = s.counts or {}
        table.add_row(s.session_id, s.status, s.executor, s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                      str(c.get("attempts", "")), str(c.get("succeeded", "")), str(c.get("failed", "")))
    out.print(table)


@sessions_app.command("show")
@with_settings(DB_FIELDS)
def sessions_show(settings: Settings, session_id: Annotated[str, typer.Argument()]) -> None:
    """One session's attempts."""
    db = open_db(settings)
    session = db.session(session_id)
    out.print(f"[bold]{session_id}[/] {session.status} ({session.executor})")
    if session.error:
        out.print(f"[red]error:[/] {escape(session.error)}")
    out.print(_attempts_table(db.attempts(session_id=session_id)))


@sessions_app.command("watch")
@with_settings(STORE_FIELDS)
def sessions_watch(
    settings: Settings,
    session_id: Annotated[str | None, typer.Argument(help="Default: the latest session.")] = None,
    interval: Annotated[float, typer.Option(help="Refresh every N seconds.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Stop watching after N seconds.")] = 3600.0,
) -> None:
    """Live view of a session (run by any process): counts, running attempts, last log line."""
    db = open_db(settings)
    if session_id is None:
        latest = db.sessions(1)
        if not latest:
            raise BadInput("no sessions yet")
        session_id = latest[0].session_id
    sink = open_log_sink(settings.log_store, write_retry_seconds=settings.log_write_retry_seconds)
    deadline = time.monotonic() + timeout
    with Live(console=out, refresh_per_second=4) as live:
        while True:
            session = db.session(session_id)
            live.update(_watch_view(session, db.attempts(session_id=session_id), sink))
            if session.status != "running" or time.monotonic() >= deadline:
                break
            time.sleep(interval)


def _last_line(sink: LogSink, attempt: AttemptRecord) -> str:
    for stream in ("stdout", "combined"):
        key = log_key(attempt.identity_session_id, attempt.run_id, attempt.phase_id, attempt.attempt, stream)
        path = Path(sink.url_for(key))
        if path.is_file():
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - 4096))
                lines = handle.read().decode("utf-8", errors="replace").strip().splitlines()
            return lines[-1][:100] if lines else ""
    return ""


def _watch_view(session: SessionRecord, attempts: list[AttemptRecord], sink: LogSink) -> Table:
    running = [a for a in attempts if a.status == "running"]
    ok = sum(a.failure_class == "succeeded" for a in attempts)
    failed = sum(a.status == "finished" and a.failure_class != "succeeded" for a in attempts)
    title = (f"{session.session_id} [{session.status}]: [yellow]{len(running)} running[/] "
             f"[green]{ok} succeeded[/] [red]{failed} failed[/]")
    table = Table("run", "phase", "#", "job/pod", "node", "elapsed", "last log line", title=title)
    now = utcnow()
    for a in running:
        started = a.started_at or a.created_at
        pod = (a.pod_names or (a.job_name or "",))[-1]
        table.add_row(escape(a.run_id), escape(a.phase_id), str(a.attempt), escape(pod or ""),
                      escape(a.node or ""), f"{(now - started).total_seconds():.0f}s",
                      escape(_last_line(sink, a)))
    return table


def _attempts_table(attempts: list[AttemptRecord]) -> Table:
    table = Table("run", "phase", "#", "class", "exit", "seconds", "message", "log", title="Attempts")
    for a in attempts:
        seconds = a.container_seconds if a.container_seconds is not None else a.total_seconds
        exit_code = str(a.exit_code) if a.exit_code is not None else f"null: {a.exit_code_reason or '-'}"
        log = a.logs[-1].url if a.logs else ""
        style = "green" if a.failure_class == "succeeded" else "red"
        table.add_row(escape(a.run_id), escape(a.phase_id), str(a.attempt),
                      f"[{style}]{a.failure_class or a.status}[/]", escape(exit_code),
                      f"{seconds:.2f}" if seconds is not None else "", escape(a.message or ""),
                      escape(log))
    return table


@app.command()
@with_settings(DB_FIELDS)
def report(
    settings: Settings,
    session_id: Annotated[str, typer.Argument()],
    format: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.MD,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print a session's report (json, md or a self-contained html file)."""
    session = open_db(settings).session(session_id)
    if session.report is None:
        raise BadInput(f"session {session_id} has no report (status {session.status})")
    if format is ReportFormat.JSON:
        text = json.dumps(session.report, indent=2, default=str) + "\n"
    elif format is ReportFormat.HTML:
        text = render_html(session.report)
    else:
        text = render_markdown(session.report)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


@app.command()
@with_settings(STORE_FIELDS)
def logs(
    settings: Settings,
    session_id: Annotated[str, typer.Argument()],
    phase_id: Annotated[str, typer.Argument()],
    run_id: Annotated[str | None, typer.Option("--run-id", help="When the phase id is in several runs.")] = None,
    stream: Annotated[LogStream, typer.Option(help="Which stream.")] = LogStream.ALL,
) -> None:
    """Write a phase's stored log(s) of a session to stdout, byte for byte."""
    db = open_db(settings)
    db.session(session_id)
    attempts = db.attempts(session_id=session_id, phase_id=phase_id, run_id=run_id)
    if not attempts:
        raise BadInput(f"no attempt of phase {phase_id!r} in session {session_id}")
    if len({a.run_id for a in attempts}) > 1:
        raise BadInput(f"phase {phase_id!r} is in several runs of this session: pass --run-id")
    sink = open_log_sink(settings.log_store, write_retry_seconds=settings.log_write_retry_seconds)
    for attempt in attempts:
        for pointer in attempt.logs:
            if stream is LogStream.ALL or stream.value == pointer.stream:
                sys.stdout.flush()
                for chunk in sink.read(pointer.url):
                    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


class ProgressObserver:
    """Rich progress bar: done / failed / running, with an ETA."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.ok = self.failed = self.running = 0

    def _describe(self) -> str:
        return f"[green]{self.ok} ok[/] [red]{self.failed} failed[/] [yellow]{self.running} running[/]"

    def planned(self, plan: Plan) -> None:
        if self.task is None:
            self.task = self.progress.add_task(self._describe(), total=len(plan.selected))
        else:  # a further page of a large backlog
            total = self.progress.tasks[0].total or 0
            self.progress.update(self.task, total=total + len(plan.selected))

    def attempt_started(self, phase: Phase, attempt: int) -> None:
        self.running += 1
        self._refresh(advance=0)

    def attempt_finished(self, phase: Phase, attempt: int, result: AttemptResult) -> None:
        self.running = max(0, self.running - 1)
        if result.succeeded:
            self.ok += 1
        else:
            self.failed += 1
            self.progress.console.print(
                f"[red]✗[/] {escape(phase.run_id)}/{escape(phase.phase_id)} #{attempt}: "
                f"{result.failure_class.value}: {escape(result.message)}")
        self._refresh(advance=1)

    def _refresh(self, *, advance: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=advance, description=self._describe())


def kube_config_present(settings: Settings) -> bool:
    if settings.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = [*os.environ.get("KUBECONFIG", "").split(os.pathsep), str(Path("~/.kube/config").expanduser())]
    return any(p and Path(p).is_file() for p in paths)


def choose_executor(settings: Settings) -> tuple[str, str]:
    """(executor name, why) for the settings: ``auto`` means kubernetes when a config exists."""
    if settings.executor != "auto":
        return settings.executor, "--executor"
    if kube_config_present(settings):
        return "kubernetes", "a kubeconfig or in-cluster config was found"
    return "local", "no kubeconfig found"


def connect_cluster(settings: Settings, metrics: Metrics) -> KubeApi:
    from batchdrain.kube import connect

    try:
        return connect(settings, on_retry=lambda _call, _error: metrics.api_retries.inc())
    except KubeError as exc:
        raise BadInput(f"cannot use the cluster: {exc}") from exc


def run_preflight(settings: Settings, db: Database, api: KubeApi | None) -> list[Check]:
    checks = check_database(db) + check_api_url(settings)
    if api is not None:
        checks += check_cluster(api)
    return checks


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
    db = open_db(settings, migrate=False)
    db.ensure_schema(auto_upgrade=db.backend == "sqlite")
    the_plan = make_plan(db, settings, full=dry_run)  # bad filters fail here, before anything starts
    if dry_run:
        _print_plan(the_plan)
        return
    metrics = Metrics(registry=None)
    name, why = choose_executor(settings)
    err.print(f"executor: {name} ({why})")
    api = connect_cluster(settings, metrics) if name == "kubernetes" else None
    checks = run_preflight(settings, db, api)
    if not all(c.ok for c in checks):
        raise PreflightFailed(checks)
    executor: Executor
    if api is not None:
        from batchdrain.executors.kubernetes import KubernetesExecutor

        executor = KubernetesExecutor(api, settings)
    else:
        executor = LocalExecutor()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    stop = StopSignal()

    def on_term(signum: int, _frame: object) -> None:
        err.print(f"received {signal.Signals(signum).name}: no new phases; collecting running ones for up to "
                  f"{settings.term_grace_seconds:g}s")
        stop.request(settings.term_grace_seconds)

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    sink = open_log_sink(settings.log_store, write_retry_seconds=settings.log_write_retry_seconds)
    try:
        outcome = _run_session(settings, db=db, sink=sink, executor=executor, stop=stop, metrics=metrics,
                               quiet=quiet, preflight=as_record(checks))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.print(_summary(outcome.report))
    if outcome.leaks:
        err.print(f"[red]leak audit: {len(outcome.leaks)} object(s) of the session still present:[/] "
                  + ", ".join(outcome.leaks))
    if outcome.error:
        err.print(f"[red]batchdrain: error:[/] {escape(outcome.error)}", soft_wrap=True)
    raise typer.Exit(outcome.exit_code)


def _run_session(settings: Settings, *, db: Database, sink: LogSink, executor: Executor, stop: StopSignal,
                 metrics: Metrics, quiet: bool, preflight: list[dict[str, Any]]) -> SessionOutcome:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err, disable=quiet) as progress:
        session = DrainSession(db=db, sink=sink, executor=executor, settings=settings,
                               observer=ProgressObserver(progress), stop=stop, metrics=metrics,
                               preflight={"checks": preflight})
        return session.run()


def _summary(report: dict[str, Any]) -> str:
    c = report["counts"]
    d = report["durations"]["container_seconds"]
    lines = [
        f"session [bold]{report['session_id']}[/]: {c['attempts']} attempt(s), "
        f"[green]{c['succeeded']} succeeded[/], [red]{c['failed']} failed[/]"
        + (f", {c['unfinished']} unfinished" if c["unfinished"] else ""),
        "classes: " + ", ".join(f"{k}={v}" for k, v in c["by_class"].items()) if c["by_class"] else "classes: -",
        f"duration s: min {d['min']} median {d['median']} p95 {d['p95']} max {d['max']}",
        f"report: {report['pointers'].get('markdown', '(not stored: see the error below)')}",
        f"        batchdrain report {report['session_id']}",
    ]
    return "\n".join(lines)


def _print_plan(plan: Plan) -> None:
    table = Table("#", "run", "phase", "why", title=f"Would run {len(plan.selected)} phase(s)")
    for index, item in enumerate(plan.selected, start=1):
        table.add_row(str(index), escape(item.phase.run_id), escape(item.phase.phase_id), item.why)
    out.print(table)
    skipped = [s for s in plan.skipped if s.reason != "complete"]
    complete = len(plan.skipped) - len(skipped)
    title = f"Skipped {len(skipped)} phase(s) ({complete} complete not shown)"
    table = Table("run", "phase", "state", "reason", title=title)
    for skip in skipped:
        table.add_row(escape(skip.phase.run_id), escape(skip.phase.phase_id), skip.phase.state.value,
                      escape(skip.reason))
    out.print(table)


@app.command()
@with_settings()
def doctor(settings: Settings) -> None:
    """Check the database, the API URL and (for the kubernetes executor) cluster access and RBAC."""
    db = open_db(settings, migrate=False)
    name, why = choose_executor(settings)
    api = connect_cluster(settings, Metrics(registry=None)) if name == "kubernetes" else None
    checks = run_preflight(settings, db, api)
    table = Table("check", "ok", "detail", title=f"Preflight (executor {name}: {why})")
    for check in checks:
        table.add_row(check.name, "[green]yes[/]" if check.ok else "[red]NO[/]", escape(check.detail))
    out.print(table)
    if not all(c.ok for c in checks):
        raise PreflightFailed(checks)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns every error into a one-line message and a documented exit code."""
    try:
        with _resources:
            result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"batchdrain: {exc}")
        return int(getattr(exc, "exit_code", 2))
    except (BadInput, DatabaseUnavailable, PreflightFailed) as exc:
        err.print(f"[red]batchdrain: error:[/] {escape(mask_secrets(str(exc), []))}", soft_wrap=True)
        return 2
    except Exception as exc:
        err.print(f"[red]batchdrain: controller error:[/] {type(exc).__name__}: "
                  f"{escape(mask_secrets(str(exc), []))}", soft_wrap=True)
        if os.environ.get("BATCHDRAIN_DEBUG"):
            raise
        return 1
    return int(result) if isinstance(result, int) else 0
