"""Session reports: a versioned JSON document and its markdown rendering, built purely.

The report is what a person reads the morning after a drain, so it answers the
questions the seed tool could not: what ran, for how long, how each failure is
classed and where its log is, which failures are the same failure, whether phases
ran with the controller's identity, and whether the session left anything behind.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from batchdrain.classify import normalise_error_line
from batchdrain.db import AttemptRecord, SessionRecord
from batchdrain.domain import FAST_FAILURE_CLASSES, FailureClass, LogPointer, RunCounts
from batchdrain.identity import header_value

REPORT_SCHEMA = "batchdrain.report/v1"


def duration_stats(values: list[float]) -> dict[str, float | int | None]:
    """min/median/mean/p95/max; p95 by nearest rank so it is always an observed value."""
    if not values:
        return {"count": 0, "min": None, "median": None, "mean": None, "p95": None, "max": None}
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return {
        "count": len(ordered),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "mean": round(statistics.fmean(ordered), 3),
        "p95": round(ordered[rank - 1], 3),
        "max": round(ordered[-1], 3),
    }


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


def failure_clusters(attempts: Sequence[AttemptRecord]) -> list[dict[str, Any]]:
    """Group failures by class and normalised first error line: one row per distinct failure."""
    groups: dict[tuple[str, str], list[AttemptRecord]] = defaultdict(list)
    for attempt in attempts:
        if attempt.failure_class in (None, FailureClass.SUCCEEDED):
            continue
        line = attempt.first_error_line or ""
        groups[(str(attempt.failure_class), normalise_error_line(line))].append(attempt)
    clusters: list[dict[str, Any]] = []
    for (cls, signature), members in groups.items():
        clusters.append({
            "failure_class": cls,
            "signature": signature or "(no error line)",
            "example": members[0].first_error_line or members[0].message,
            "count": len(members),
            "phases": sorted({f"{a.run_id}/{a.phase_id}" for a in members}),
        })
    clusters.sort(key=lambda c: (-c["count"], c["failure_class"], c["signature"]))
    return clusters


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
        "started_at": _iso(attempt.started_at), "finished_at": _iso(attempt.finished_at),
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
    rows = [attempt_row(a, instant_threshold=instant_threshold,
                        identity_check=identity_checks.get(a.attempt_pk, "not checked"))
            for a in attempts]
    by_class: dict[str, int] = defaultdict(int)
    for attempt in attempts:
        by_class[attempt.failure_class.value if attempt.failure_class else "unfinished"] += 1
    durations = [d for d in (attempt_duration(a) for a in attempts) if d is not None]
    totals = [a.total_seconds for a in attempts if a.total_seconds is not None]
    overheads = [
        a.total_seconds - a.container_seconds
        for a in attempts
        if a.total_seconds is not None and a.container_seconds is not None
    ]
    finished = [a for a in attempts if a.status == "finished"]
    return {
        "schema": REPORT_SCHEMA,
        "session_id": session.session_id,
        "executor": session.executor,
        "started_at": _iso(session.started_at),
        "ended_at": _iso(dt.datetime.now(dt.UTC)),
        "interrupted": interrupted,
        "settings": dict(session.settings),
        "identity": dict(session.identity),
        "counts": {
            "attempts": len(attempts),
            "succeeded": by_class.get(FailureClass.SUCCEEDED.value, 0),
            "failed": len(finished) - by_class.get(FailureClass.SUCCEEDED.value, 0),
            "unfinished": len(attempts) - len(finished),
            "by_class": dict(sorted(by_class.items())),
            "skipped": len(skipped),
        },
        "durations": {
            "container_seconds": duration_stats(durations),
            "total_seconds": duration_stats(totals),
            "controller_overhead_seconds": duration_stats(overheads),
        },
        "throughput": {
            "wall_seconds": round(wall_seconds, 3),
            "phases_per_hour": round(len(finished) / wall_seconds * 3600, 1) if wall_seconds > 0 else None,
        },
        "instant_completes": [
            {"run_id": r["run_id"], "phase_id": r["phase_id"], "attempt": r["attempt"], "why": r["instant"]}
            for r in rows if r["instant"]
        ],
        "failure_clusters": failure_clusters(attempts),
        "identity_mismatches": [
            {"run_id": r["run_id"], "phase_id": r["phase_id"], "attempt": r["attempt"],
             "problem": r["identity_check"]}
            for r in rows if r["identity_check"] != "ok"
        ],
        "runs": {
            run: {"before": before[run].to_json(), "after": after.get(run, RunCounts()).to_json()}
            for run in sorted(before)
        },
        "skipped": skipped,
        "leaks": leaks,
        "attempts": rows,
    }


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    counts = report["counts"]
    lines = [
        f"# Drain session {report['session_id']}",
        "",
        f"- executor: {report['executor']}; started {report['started_at']}; ended {report['ended_at']}"
        + ("; **interrupted (SIGTERM)**" if report["interrupted"] else ""),
        f"- attempts: {counts['attempts']} ({counts['succeeded']} succeeded, {counts['failed']} failed,"
        f" {counts['unfinished']} unfinished); skipped phases: {counts['skipped']}",
        f"- by class: {', '.join(f'{k}={v}' for k, v in counts['by_class'].items()) or 'none'}",
        f"- database: {report['identity'].get('database_url')}; phases get "
        f"{report['identity'].get('phase_database_url')}; API: {report['identity'].get('api_url') or '(none)'}",
        f"- throughput: {report['throughput']['phases_per_hour']} phases/hour over "
        f"{report['throughput']['wall_seconds']}s",
        f"- leaks: {', '.join(report['leaks']) if report['leaks'] else 'none'}",
        "",
        "## Durations (seconds)",
        "",
        "| measure | count | min | median | mean | p95 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, stats in report["durations"].items():
        lines.append(f"| {name} | {stats['count']} | {_cell(stats['min'])} | {_cell(stats['median'])} | "
                     f"{_cell(stats['mean'])} | {_cell(stats['p95'])} | {_cell(stats['max'])} |")
    lines += ["", "## Runs (before -> after)", "", "| run | queued | failed | complete | skipped |",
              "|---|---|---|---|---|"]
    for run, counts_ in report["runs"].items():
        b, a = counts_["before"], counts_["after"]
        lines.append(f"| {_cell(run)} | {b['queued']} -> {a['queued']} | {b['failed']} -> {a['failed']} | "
                     f"{b['complete']} -> {a['complete']} | {b['skipped']} -> {a['skipped']} |")
    lines += ["", "## Attempts", "",
              "| run | phase | # | class | exit | seconds | message | logs |", "|---|---|---|---|---|---|---|---|"]
    for row in report["attempts"]:
        exit_code = row["exit_code"] if row["exit_code"] is not None else f"null ({row['exit_code_reason']})"
        logs = "<br>".join(f"{p['stream']}: {p['url']} ({p['size_bytes']} B)" for p in row["logs"])
        seconds = f"{row['duration_seconds']:.2f}" if row["duration_seconds"] is not None else ""
        lines.append(f"| {_cell(row['run_id'])} | {_cell(row['phase_id'])} | {row['attempt']} | "
                     f"{row['failure_class']} | {_cell(exit_code)} | {seconds} | {_cell(row['message'])} | "
                     f"{_cell(logs)} |")
    if report["failure_clusters"]:
        lines += ["", "## Failure clusters", "", "| class | count | first error line | phases |",
                  "|---|---|---|---|"]
        for cluster in report["failure_clusters"]:
            lines.append(f"| {cluster['failure_class']} | {cluster['count']} | {_cell(cluster['example'])} | "
                         f"{_cell(', '.join(cluster['phases']))} |")
    return "\n".join(lines + _markdown_lists(report)) + "\n"


# (title, report key, how one item reads): the report's lists, each a section when not empty.
_LISTS = (
    ("Instant completes", "instant_completes", "- {run_id}/{phase_id} #{attempt}: {why}"),
    ("Identity mismatches", "identity_mismatches", "- {run_id}/{phase_id} #{attempt}: {problem}"),
    ("Skipped phases", "skipped", "- {run_id}/{phase_id}: {reason}"),
    ("Left running for the next session", "left_for_adoption", "- {item}"),
    ("Waiting for another session", "waiting", "- {item}"),
    ("Where the attempts left running went", "where_they_went",
     "- {run_id}/{phase_id} #{attempt}: adopted by {adopted_by}, {outcome}"),
    ("Notes", "notes", "- {item}"),
)


def _markdown_lists(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for title, key, fmt in _LISTS:
        items = report.get(key) or []
        if items:
            lines += ["", f"## {title}", ""]
            lines += [fmt.format(**item) if isinstance(item, Mapping) else fmt.format(item=item) for item in items]
    return lines


def where_they_went(report: Mapping[str, Any], attempts: Sequence[AttemptRecord]) -> dict[str, Any]:
    """The stored report of a session, with what became of the attempts it left running.

    A session stopped by SIGTERM (or that lost the API) leaves attempts open for the next
    session; when its report is read later, each such attempt says who adopted it and
    how it ended, read from the attempt rows as they are now.
    """
    left = {(r["run_id"], r["phase_id"], r["attempt"]) for r in report.get("attempts", []) if r["status"] == "running"}
    went = []
    for attempt in attempts:
        if (attempt.run_id, attempt.phase_id, attempt.attempt) not in left or attempt.adopted_by is None:
            continue
        outcome = (f"{attempt.failure_class.value if attempt.failure_class else 'unclassified'}: {attempt.message}"
                   if attempt.status == "finished" else "still running")
        went.append({"run_id": attempt.run_id, "phase_id": attempt.phase_id, "attempt": attempt.attempt,
                     "adopted_by": attempt.adopted_by, "outcome": outcome})
    return {**report, "where_they_went": went} if went else dict(report)
