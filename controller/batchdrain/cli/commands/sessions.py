"""Commands that read finished or running sessions: ``sessions list|show|watch``, ``report``, ``logs``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape

from batchdrain.bounds import INT64_MAX, seconds_problem
from batchdrain.cli.flags import DB_FIELDS, STORE_FIELDS, with_settings
from batchdrain.cli.render import attempts_table, err, out, session_lines, sessions_table, watch_view
from batchdrain.cli.wiring import open_db, open_sink
from batchdrain.domain import BadInput
from batchdrain.report import as_summary, json_chunks, left_running, stored_rows, where_they_went
from batchdrain.report_html import html_chunks
from batchdrain.report_markdown import markdown_chunks
from batchdrain.settings import Settings

# ``report`` and ``logs`` sit at the top level; ``sessions_app`` is the ``sessions`` group.
app = typer.Typer()
sessions_app = typer.Typer(no_args_is_help=True, help="Drain sessions.")


class ReportFormat(StrEnum):
    JSON = "json"
    MD = "md"
    HTML = "html"


class LogStream(StrEnum):
    ALL = "all"
    STDOUT = "stdout"
    STDERR = "stderr"
    COMBINED = "combined"


@sessions_app.command("list")
@with_settings(DB_FIELDS)
def sessions_list(settings: Settings, limit: Annotated[int, typer.Option(
        min=1, max=INT64_MAX, help="How many.")] = 20) -> None:
    """Recent drain sessions."""
    out.print(sessions_table(open_db(settings).sessions(limit)))


@sessions_app.command("show")
@with_settings(DB_FIELDS)
def sessions_show(
    settings: Settings,
    session_id: Annotated[str, typer.Argument()],
    limit: Annotated[int, typer.Option(min=0, max=INT64_MAX, help="List at most N attempts: those that did not succeed "
                                                    "first, then the latest.")] = 50,
) -> None:
    """One session: its counts and durations, and its attempts that did not succeed first."""
    db = open_db(settings)
    session = db.session(session_id, report=False)
    out.print(f"[bold]{session_id}[/] {session.status} ({session.executor})")
    if session.error:
        out.print(f"[red]error:[/] {escape(session.error)}")
    # An ended session's counts and durations are in its row and its report's summary;
    # a running one's are counted now (without durations: a sort of every attempt).
    counts = session.counts or db.attempt_tally(session_id, durations=False).counts()
    out.print(session_lines(counts, db.report_value(session_id, "durations")))
    rows = db.attempts_table(session_id, limit=limit)
    out.print(attempts_table(rows))
    if counts.get("attempts", 0) > len(rows):
        out.print(f"{counts['attempts'] - len(rows)} more: see `batchdrain report {escape(session_id)}`")


@sessions_app.command("watch")
@with_settings(STORE_FIELDS)
def sessions_watch(
    settings: Settings,
    session_id: Annotated[str | None, typer.Argument(help="Default: the latest session.")] = None,
    interval: Annotated[float, typer.Option(help="Refresh every N seconds.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Stop watching after N seconds.")] = 3600.0,
) -> None:
    """Live view of a session (run by any process): counts, running attempts, last log line."""
    for flag, seconds in (("--interval", interval), ("--timeout", timeout)):
        problem = seconds_problem(seconds, positive=False)  # --timeout 0: one look
        if problem:
            raise BadInput(f"{flag} {problem}")
    db = open_db(settings)
    if session_id is None:
        latest = db.sessions(1)
        if not latest:
            raise BadInput("no sessions yet")
        session_id = latest[0].session_id
    sink = open_sink(settings)
    deadline = time.monotonic() + timeout
    with Live(console=out, refresh_per_second=4) as live:
        while True:
            session = db.session(session_id, report=False)
            live.update(watch_view(session, db.attempt_tally(session_id, durations=False),
                                   db.running_attempts(session_id), sink))
            if session.status != "running" or time.monotonic() >= deadline:
                break
            time.sleep(interval)


def _write(chunks: Iterable[str], output: Path | None) -> None:
    """To stdout as it comes, or to ``output`` through a temporary file: never half a file."""
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {output}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    err.print(f"wrote {output}")


def check_output(output: Path | None) -> None:
    """Refuse an output that cannot be written before the report is read from the database."""
    if output is None:
        return
    if output.is_dir():
        raise BadInput(f"cannot write {output}: it is a directory")
    probe = output.with_name(output.name + ".tmp")
    try:
        probe.open("w", encoding="utf-8").close()
    except OSError as exc:
        raise BadInput(f"cannot write {output}: {exc.strerror or exc}") from exc
    probe.unlink(missing_ok=True)


@app.command()
@with_settings(DB_FIELDS)
def report(
    settings: Settings,
    session_id: Annotated[str, typer.Argument()],
    format: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.MD,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print a session's report (json, md or a self-contained html file).

    The stored summary, with the attempts' rows read page by page from the database
    as they are now (an attempt left running says where it went).
    """
    check_output(output)
    db = open_db(settings)
    session = db.session(session_id)
    if session.report is None:
        raise BadInput(f"session {session_id} has no report (status {session.status})")
    summary = as_summary(session.report)
    if left_running(summary):
        summary = where_they_went(summary, db.attempts_by_keys(left_running(summary)))

    def rows() -> Iterator[dict[str, Any]]:
        return stored_rows(summary, db.session_attempts(session_id))

    if format is ReportFormat.JSON:
        chunks = json_chunks(summary, (json.dumps(r, default=str) for r in rows()), indent=2)
    elif format is ReportFormat.HTML:
        chunks = html_chunks(summary, rows)
    else:
        chunks = markdown_chunks(summary, rows())
    _write(chunks, output)


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
    db.session(session_id, report=False)  # unknown: one clear line
    attempts = db.phase_attempts(session_id, phase_id=phase_id, run_id=run_id)
    if not attempts:
        raise BadInput(f"no attempt of phase {phase_id!r} in session {session_id}")
    if len({a.run_id for a in attempts}) > 1:
        raise BadInput(f"phase {phase_id!r} is in several runs of this session: pass --run-id")
    sink = open_sink(settings)
    for attempt in attempts:
        for pointer in attempt.logs:
            if stream is LogStream.ALL or stream.value == pointer.stream:
                sys.stdout.flush()
                for chunk in sink.read(pointer.url):
                    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
