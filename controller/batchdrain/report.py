"""Session reports: a versioned JSON summary and its per-attempt rows, built purely.

The report is what a person reads the morning after a drain, so it answers the
questions the seed tool could not: what ran, for how long, how each failure is
classed and where its log is, which failures are the same failure, whether phases
ran with the controller's identity, and whether the session left anything behind.

Since report/v2 a report is two things, so that no process holds a session's
attempts at once: the **summary** (counts, durations, clusters, capped example
lists with their full counts, runs before/after, leaks, notes, pointers to the
files), which the session row stores, and the **rows** (``attempt_row``, one per
attempt), which are streamed page by page from the database into the report files
and the ``report`` command's output. A v1 report (which held every row under
``attempts``) is still read: ``as_summary`` turns it into a summary.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from batchdrain.db import AttemptRecord, AttemptTally, DurationStats, SessionRecord
from batchdrain.domain import FAST_FAILURE_CLASSES, FailureClass, LogPointer, RunCounts
from batchdrain.identity import header_value
from batchdrain.report_lists import ReportAccumulator

REPORT_SCHEMA = "batchdrain.report/v2"
SKIPPED_EXAMPLES = 1000


def duration_stats(values: list[float]) -> dict[str, float | int | None]:
    """min/median/mean/p95/max; p95 by nearest rank so it is always an observed value."""
    return stats_of(values).to_json()


def stats_of(values: list[float]) -> DurationStats:
    """``duration_stats`` as its typed value (``Database.attempt_tally`` computes the same in SQL)."""
    if not values:
        return DurationStats()
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return DurationStats(
        count=len(ordered), min=round(ordered[0], 3), median=round(statistics.median(ordered), 3),
        mean=round(statistics.fmean(ordered), 3), p95=round(ordered[rank - 1], 3), max=round(ordered[-1], 3),
    )


def attempt_duration(attempt: AttemptRecord) -> float | None:
    value = attempt.container_seconds
    if value is None:
        value = attempt.total_seconds
    return float(value) if value is not None else None


def instant_reason(attempt: AttemptRecord, threshold: float) -> str | None:
    """Why an attempt is suspiciously fast, or None. A fast failure with a class that
    explains it (image pull, config error...) is not suspicious.

    Only a duration *known* to be under the threshold counts. A Kubernetes container's
    whole number of seconds is the kubelet's truncated clock: the true value may be up
    to a second more, so 0 s says "under a second", not "instant" (flagging it marked
    nearly every sub-second phase). Its sub-second values are real measurements.
    """
    duration = attempt_duration(attempt)
    if duration is None:
        return None
    known_below = duration + 1.0 if attempt.executor == "kubernetes" and float(duration).is_integer() else duration
    if known_below >= threshold:
        return None
    if attempt.failure_class in FAST_FAILURE_CLASSES:
        return None
    outcome = "succeeded" if attempt.failure_class is FailureClass.SUCCEEDED else "failed"
    return f"{outcome} in {duration:.3f}s (< {threshold:g}s) without an explaining class"


def identity_matches(header: str, attempt: AttemptRecord, expected: dict[str, str | None]) -> str | None:
    """Compare a stored log's identity header with what the attempt should have run with."""
    found: dict[str, str] = {}
    for line in header.splitlines():
        if not line.startswith("[batchdrain] ") or ": " not in line:
            continue
        key, _, value = line.removeprefix("[batchdrain] ").partition(": ")
        found.setdefault(key, value)
    wanted = {
        "session": attempt.identity_session_id,
        "run": attempt.run_id,
        "phase": attempt.phase_id,
        "attempt": str(attempt.attempt),
        "DATABASE_URL": expected["database_url"] or "(none)",
        "API_URL": expected["api_url"] or "(none)",
    }
    # The header writes control characters as escapes: compare with the escaped ids.
    wrong = [f"{k}={found.get(k)!r} expected {v!r}" for k, v in wanted.items() if found.get(k) != header_value(v)]
    return "identity header mismatch: " + ", ".join(wrong) if wrong else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _pointer_json(pointer: LogPointer) -> dict[str, Any]:
    return {"stream": pointer.stream, "url": pointer.url, "size_bytes": pointer.size_bytes,
            "sha256": pointer.sha256, "incomplete": pointer.incomplete, "stalled_seconds": pointer.stalled_seconds}


def attempt_row(attempt: AttemptRecord, *, instant_threshold: float, identity_check: str | None) -> dict[str, Any]:
    """One attempt as the report's ``attempts`` rows have it: the one place the schema's row is drawn.

    The attempt table's columns in table order (without its key), datetimes as ISO
    text, then what the report derives. ``identity_check`` is the problem found in the
    stored log's header, None when it matched.
    """
    return {
        "session_id": attempt.session_id, "run_id": attempt.run_id, "phase_id": attempt.phase_id,
        "attempt": attempt.attempt, "status": attempt.status, "executor": attempt.executor,
        "command": list(attempt.command), "image": attempt.image, "image_digest": attempt.image_digest,
        "job_name": attempt.job_name, "namespace": attempt.namespace, "pod_names": list(attempt.pod_names),
        "pod_uid": attempt.pod_uid, "node": attempt.node, "exit_code": attempt.exit_code,
        "exit_code_reason": attempt.exit_code_reason, "created_at": _iso(attempt.created_at),
        "admitted_at": _iso(attempt.admitted_at), "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "container_seconds": attempt.container_seconds, "total_seconds": attempt.total_seconds,
        "failure_class": attempt.failure_class.value if attempt.failure_class else None,
        "message": attempt.message, "first_error_line": attempt.first_error_line,
        "log_mode": attempt.log_mode.value if attempt.log_mode else None,
        "logs": [_pointer_json(p) for p in attempt.logs], "identity": dict(attempt.identity),
        "raw_status": dict(attempt.raw_status) if attempt.raw_status is not None else None,
        "duration_seconds": attempt_duration(attempt),
        "instant": instant_reason(attempt, instant_threshold),
        "identity_check": identity_check or "ok",
    }


def tally_of(attempts: Sequence[AttemptRecord]) -> AttemptTally:
    """What ``Database.attempt_tally`` computes in SQL, from attempts in memory (small reports, tests)."""
    by_class: dict[str, int] = {}
    for attempt in attempts:
        name = attempt.failure_class.value if attempt.failure_class else "unfinished"
        by_class[name] = by_class.get(name, 0) + 1
    durations = [d for d in (attempt_duration(a) for a in attempts) if d is not None]
    totals = [a.total_seconds for a in attempts if a.total_seconds is not None]
    overheads = [a.total_seconds - a.container_seconds for a in attempts
                 if a.total_seconds is not None and a.container_seconds is not None]
    waits = [round((a.admitted_at - a.created_at).total_seconds(), 6) for a in attempts if a.admitted_at is not None]
    return AttemptTally(
        by_class=dict(sorted(by_class.items())), finished=sum(a.status == "finished" for a in attempts),
        durations={"container_seconds": stats_of(durations), "total_seconds": stats_of(totals),
                   "controller_overhead_seconds": stats_of(overheads), "queue_wait_seconds": stats_of(waits)})


def build_summary(
    *,
    session: SessionRecord,
    tally: AttemptTally,
    lists: ReportAccumulator,
    before: dict[str, RunCounts],
    after: dict[str, RunCounts],
    leaks: list[str],
    skipped: Sequence[dict[str, str]],
    wall_seconds: float,
    interrupted: bool,
    skipped_count: int | None = None,
) -> dict[str, Any]:
    """The report without its rows: what the session row stores (report/v2).

    ``skipped_count``: how many were skipped when ``skipped`` names only the first ones.
    """
    listed = lists.summary()
    return {
        "schema": REPORT_SCHEMA,
        "session_id": session.session_id,
        "executor": session.executor,
        "started_at": _iso(session.started_at),
        "ended_at": _iso(dt.datetime.now(dt.UTC)),
        "interrupted": interrupted,
        "settings": dict(session.settings),
        "identity": dict(session.identity),
        "counts": {**tally.counts(), "skipped": len(skipped) if skipped_count is None else skipped_count,
                   **lists.counts()},
        "durations": {name: stats.to_json() for name, stats in tally.durations.items()},
        "throughput": {
            "wall_seconds": round(wall_seconds, 3),
            "phases_per_hour": round(tally.finished / wall_seconds * 3600, 1) if wall_seconds > 0 else None,
        },
        **listed,
        "runs": {
            run: {"before": before[run].to_json(), "after": after.get(run, RunCounts()).to_json()}
            for run in sorted(before)
        },
        "skipped": list(skipped[:SKIPPED_EXAMPLES]),
        "leaks": leaks,
    }


def build_report(
    *,
    session: SessionRecord,
    attempts: Sequence[AttemptRecord],
    before: dict[str, RunCounts],
    after: dict[str, RunCounts],
    leaks: list[str],
    identity_checks: dict[int, str | None],
    skipped: list[dict[str, str]],
    instant_threshold: float,
    wall_seconds: float,
    interrupted: bool,
) -> dict[str, Any]:
    """A whole report (summary and rows) from attempts in memory: for small sessions and tests.

    The controller streams instead (``drain.reporting``); both feed the same accumulator.
    """
    lists = ReportAccumulator()
    rows = [checked_row(a, lists, instant_threshold=instant_threshold,
                        identity_check=identity_checks.get(a.attempt_pk, "not checked"))
            for a in attempts]
    summary = build_summary(session=session, tally=tally_of(attempts), lists=lists, before=before, after=after,
                            leaks=leaks, skipped=skipped, wall_seconds=wall_seconds, interrupted=interrupted)
    return {**summary, "attempts": rows}


def checked_row(attempt: AttemptRecord, lists: ReportAccumulator, *, instant_threshold: float,
                identity_check: str | None) -> dict[str, Any]:
    """The attempt's report row, counted into ``lists`` on the way."""
    row = attempt_row(attempt, instant_threshold=instant_threshold, identity_check=identity_check)
    lists.add(attempt, instant=row["instant"], identity_check=row["identity_check"])
    return row


def failure_clusters(attempts: Iterable[AttemptRecord]) -> list[dict[str, Any]]:
    """Group failures by class and normalised first error line: one row per distinct failure."""
    lists = ReportAccumulator()
    for attempt in attempts:
        lists.add(attempt, instant=None, identity_check="ok")
    return lists.failure_clusters()


def json_chunks(summary: Mapping[str, Any], row_texts: Iterable[str], *, indent: int | None = None) -> Iterator[str]:
    """The report JSON: the summary's keys, then ``"attempts"`` with each row's JSON text."""
    head = json.dumps(dict(summary), default=str, indent=indent,
                      separators=(",", ": ") if indent else (",", ":"))
    pad = "\n" + " " * (indent or 0) if indent else ""
    yield head[:-1].rstrip() + f',{pad}"attempts":{" " if indent else ""}['
    separator = ""
    for text in row_texts:
        yield f"{separator}{pad}{' ' * (indent or 0)}{text}"
        separator = ","
    yield f"{pad if separator else ''}]" + ("\n}\n" if indent else "}")


# -- stored reports, read back --------------------------------------------------------
def as_summary(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored report as a v2 summary: a v1 report loses its rows (read from the database
    instead) and gains what v2 adds, computed from those rows."""
    if "attempts" not in stored:
        return dict(stored)
    rows = stored["attempts"]
    summary = {k: v for k, v in stored.items() if k != "attempts"}
    summary["left_running"] = [{"run_id": r["run_id"], "phase_id": r["phase_id"], "attempt": r["attempt"]}
                               for r in rows if r["status"] == "running"]
    summary["counts"] = {**summary["counts"], "instant_completes": len(summary.get("instant_completes", [])),
                         "identity_mismatches": len(summary.get("identity_mismatches", [])),
                         "failure_clusters": len(summary.get("failure_clusters", []))}
    return summary


def left_running(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """The attempts the session left running when its report was built (at most its parallelism)."""
    return [(r["run_id"], r["phase_id"], r["attempt"]) for r in summary.get("left_running", [])]


def stored_rows(summary: Mapping[str, Any], attempts: Iterable[AttemptRecord]) -> Iterator[dict[str, Any]]:
    """The report rows of a stored summary's session, from its attempts as the database has them now.

    ``instant`` is recomputed with the session's threshold; ``identity_check`` comes from
    the summary's mismatch list, which says each mismatch while it is complete (up to
    ``IDENTITY_EXAMPLES``); past that, an unlisted row says where its check is.
    """
    threshold = float(summary.get("settings", {}).get("instant_threshold_seconds", 0.0) or 0.0)
    mismatches = {(m["run_id"], m["phase_id"], m["attempt"]): m["problem"]
                  for m in summary.get("identity_mismatches", [])}
    complete = summary.get("counts", {}).get("identity_mismatches", len(mismatches)) <= len(mismatches)
    unlisted = "ok" if complete else "not listed: see the session.json written when the session ended"
    for attempt in attempts:
        check = mismatches.get((attempt.run_id, attempt.phase_id, attempt.attempt), unlisted)
        yield attempt_row(attempt, instant_threshold=threshold, identity_check=None if check == "ok" else check)


def where_they_went(report: Mapping[str, Any], attempts: Iterable[AttemptRecord]) -> dict[str, Any]:
    """The stored report of a session, with what became of the attempts it left running.

    A session stopped by SIGTERM (or that lost the API) leaves attempts open for the next
    session; when its report is read later, each such attempt says who adopted it and
    how it ended, read from the attempt rows as they are now (``attempts``: those named
    by ``left_running``).
    """
    left = set(left_running(report))
    went = []
    for attempt in attempts:
        if (attempt.run_id, attempt.phase_id, attempt.attempt) not in left or attempt.adopted_by is None:
            continue
        outcome = (f"{attempt.failure_class.value if attempt.failure_class else 'unclassified'}: {attempt.message}"
                   if attempt.status == "finished" else "still running")
        went.append({"run_id": attempt.run_id, "phase_id": attempt.phase_id, "attempt": attempt.attempt,
                     "adopted_by": attempt.adopted_by, "outcome": outcome})
    return {**report, "where_they_went": went} if went else dict(report)
