"""What the commands print: rich tables, the drain's progress bar and summary, the watch view.

Library code never prints (house rule 7); the CLI renders here, to ``out`` for
results and ``err`` for progress and errors, so that stdout stays pipeable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Column, Table

from batchdrain.db import AttemptRecord, AttemptTally, SessionRecord
from batchdrain.domain import AttemptResult, Phase, RunCounts, utcnow
from batchdrain.drain.planning import DryRun
from batchdrain.logstore import LogSink, log_key
from batchdrain.preflight import Check
from batchdrain.selection import Plan

out = Console()
err = Console(stderr=True)


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


def runs_table(counts: Mapping[str, RunCounts]) -> Table:
    table = Table("run", "queued", "executing", "complete", "failed", "parked", title="Runs")
    for run_id, c in counts.items():
        table.add_row(escape(run_id), str(c.queued), str(c.executing), str(c.complete), str(c.failed),
                      str(c.skipped))
    return table


def sessions_table(sessions: list[SessionRecord]) -> Table:
    table = Table("status", "executor", "started", "attempts", "ok", "failed", title="Sessions")
    # Ids are what people copy into the next command: never truncated or wrapped.
    table.columns.insert(0, Column("session", no_wrap=True, min_width=len("batch-drain-20260101-000000")))
    for s in sessions:
        c = s.counts or {}
        table.add_row(s.session_id, s.status, s.executor, s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                      str(c.get("attempts", "")), str(c.get("succeeded", "")), str(c.get("failed", "")))
    return table


def attempts_table(attempts: Sequence[AttemptRecord]) -> Table:
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


def session_lines(counts: Mapping[str, Any], durations: Mapping[str, Any] | None) -> str:
    """A session's counts and durations (report shapes), as ``sessions show`` prints them."""
    lines = [f"{counts.get('attempts', 0)} attempt(s): [green]{counts.get('succeeded', 0)} succeeded[/], "
             f"[red]{counts.get('failed', 0)} failed[/], {counts.get('unfinished', 0)} unfinished",
             "classes: " + (", ".join(f"{k}={v}" for k, v in (counts.get("by_class") or {}).items()) or "-")]
    for name, d in (durations or {}).items():
        lines.append(f"{name}: min {d['min']} median {d['median']} mean {d['mean']} p95 {d['p95']} max {d['max']}")
    return "\n".join(lines)


def _last_line(sink: LogSink, attempt: AttemptRecord) -> str:
    """The last line a running attempt stored so far, from any store (a running s3:// log too)."""
    for stream in ("stdout", "combined"):
        key = log_key(attempt.identity_session_id, attempt.run_id, attempt.phase_id, attempt.attempt, stream)
        try:
            data = sink.tail(sink.url_for(key), 4096)
        except OSError as err:
            return f"(log unreadable: {err})"
        if data is not None:
            lines = data.decode("utf-8", errors="replace").strip().splitlines()
            return lines[-1][:100] if lines else ""
    return ""


def watch_view(session: SessionRecord, tally: AttemptTally, running: Sequence[AttemptRecord],
               sink: LogSink) -> Table:
    ok = tally.by_class.get("succeeded", 0)
    title = (f"{session.session_id} [{session.status}]: [yellow]{len(running)} running[/] "
             f"[green]{ok} succeeded[/] [red]{tally.finished - ok} failed[/]")
    table = Table("run", "phase", "#", "job/pod", "node", "elapsed", "last log line", title=title)
    now = utcnow()
    for a in running:
        started = a.started_at or a.created_at
        pod = (a.pod_names or (a.job_name or "",))[-1]
        table.add_row(escape(a.run_id), escape(a.phase_id), str(a.attempt), escape(pod or ""),
                      escape(a.node or ""), f"{(now - started).total_seconds():.0f}s",
                      escape(_last_line(sink, a)))
    return table


def summary(report: Mapping[str, Any]) -> str:
    """A finished drain in five lines, with where its report is."""
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


def print_plan(dry: DryRun) -> None:
    """``drain --dry-run``: what would run, and why each other phase would not.

    At most ``tally.shown`` rows of each table, then counts: the backlog may hold a
    million phases, and a table of them helps no one.
    """
    tally = dry.tally
    selected = dry.first_page.selected[: tally.shown]
    table = Table("#", "run", "phase", "why", title=f"Would run {tally.would_run} phase(s)")
    for index, item in enumerate(selected, start=1):
        table.add_row(str(index), escape(item.phase.run_id), escape(item.phase.phase_id), item.why)
    out.print(table)
    if tally.would_run > len(selected):
        out.print(f"... and {tally.would_run - len(selected)} more (the first {len(selected)} shown)")
    title = f"Skipped {tally.skipped} phase(s) ({tally.complete} complete not shown)"
    table = Table("run", "phase", "state", "reason", title=title)
    for skip in tally.shown_skipped():
        table.add_row(escape(skip.standing.run_id), escape(skip.standing.phase_id), skip.standing.state.value,
                      escape(skip.reason))
    out.print(table)
    if tally.skipped > len(tally.examples):
        out.print(f"... and {tally.skipped - len(tally.examples)} more skipped; by reason:")
        for reason, count in tally.reasons.most_common():
            out.print(f"  {count:>9}  {escape(reason)}")
    out.print(dry.forecast.line(), soft_wrap=True)


def checks_table(checks: list[Check], *, title: str) -> Table:
    table = Table("check", "ok", "detail", title=title)
    for check in checks:
        table.add_row(check.name, "[green]yes[/]" if check.ok else "[red]NO[/]", escape(check.detail))
    return table
