"""The report as markdown, written as it goes: the summary's sections around the streamed rows.

``markdown_chunks`` yields text a few lines at a time, so a session of 10^5 attempts
is rendered with one row in memory at a time (the rows come from the database or
the rows file, page by page).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _head(report: Mapping[str, Any]) -> list[str]:
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
    return lines


def attempt_line(row: Mapping[str, Any]) -> str:
    exit_code = row["exit_code"] if row["exit_code"] is not None else f"null ({row['exit_code_reason']})"
    logs = "<br>".join(f"{p['stream']}: {p['url']} ({p['size_bytes']} B)" for p in row["logs"])
    seconds = f"{row['duration_seconds']:.2f}" if row["duration_seconds"] is not None else ""
    return (f"| {_cell(row['run_id'])} | {_cell(row['phase_id'])} | {row['attempt']} | "
            f"{row['failure_class']} | {_cell(exit_code)} | {seconds} | {_cell(row['message'])} | "
            f"{_cell(logs)} |")


def _clusters(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if report["failure_clusters"]:
        lines += ["", "## Failure clusters", "", "| class | count | first error line | phases |",
                  "|---|---|---|---|"]
        for cluster in report["failure_clusters"]:
            phases = ", ".join(cluster["phases"])
            if cluster.get("phases_more"):
                phases += f" and {cluster['phases_more']} more attempt(s)"
            lines.append(f"| {cluster['failure_class']} | {cluster['count']} | {_cell(cluster['example'])} | "
                         f"{_cell(phases)} |")
    other = report.get("failure_clusters_other") or {}
    if other.get("attempts"):
        many = "at least " if other.get("clusters_at_least") else ""
        lines += ["", f"{other['attempts']} more failed attempt(s) in {many}{other['clusters']} other distinct "
                      "failure(s), not listed: see the rows"]
    return lines


# (title, report key, key under ``counts`` with the full number or None, how one item reads):
# the report's lists, each a section when not empty.
_LISTS = (
    ("Instant completes", "instant_completes", "instant_completes", "- {run_id}/{phase_id} #{attempt}: {why}"),
    ("Identity mismatches", "identity_mismatches", "identity_mismatches",
     "- {run_id}/{phase_id} #{attempt}: {problem}"),
    ("Skipped phases", "skipped", "skipped", "- {run_id}/{phase_id}: {reason}"),
    ("Left running for the next session", "left_for_adoption", None, "- {item}"),
    ("Waiting for another session", "waiting", None, "- {item}"),
    ("Where the attempts left running went", "where_they_went", None,
     "- {run_id}/{phase_id} #{attempt}: adopted by {adopted_by}, {outcome}"),
    ("Notes", "notes", None, "- {item}"),
)


def _lists(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for title, key, count_key, fmt in _LISTS:
        items = report.get(key) or []
        if items:
            lines += ["", f"## {title}", ""]
            lines += [fmt.format(**item) if isinstance(item, Mapping) else fmt.format(item=item) for item in items]
            total = report["counts"].get(count_key, len(items)) if count_key else len(items)
            if total > len(items):
                lines.append(f"- ... and {total - len(items)} more (the first {len(items)} are listed)")
    return lines


def markdown_chunks(report: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The markdown report, a chunk at a time: the summary's sections, ``rows`` in its attempts table."""
    yield "\n".join(_head(report)) + "\n"
    batch: list[str] = []
    for row in rows:
        batch.append(attempt_line(row))
        if len(batch) >= 500:
            yield "\n".join(batch) + "\n"
            batch = []
    if batch:
        yield "\n".join(batch) + "\n"
    tail = _clusters(report) + _lists(report)
    yield "\n".join(tail) + "\n" if tail else ""


def render_markdown(report: Mapping[str, Any]) -> str:
    """A whole report (with its ``attempts`` rows) as one string: small reports and tests."""
    return "".join(markdown_chunks(report, report.get("attempts", [])))
