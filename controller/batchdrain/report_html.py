"""The session report as one self-contained HTML file: inline CSS and SVG, no scripts.

A person opens it from a laptop or a CI artefact with no server and no network, so
everything (histogram, timeline, clusters, links to logs) is drawn here as static SVG
from the report summary and its rows.

Up to ``INLINE_ATTEMPTS`` attempts the page draws one timeline bar and one table row
per attempt. Beyond that it stays one readable picture: the timeline shows how many
attempts ran in each time slice, by class, the histogram is bins as always, the table
lists the attempts that did not succeed (the first ``FAILED_ROWS``), and the full
per-attempt list is linked (session.md, session.attempts.jsonl). The rows are read in
two passes (ranges, then bins), so ``rows`` is a callable that starts them afresh.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CLASS_COLOURS = {
    "succeeded": "#2e7d32", "exit_code": "#c62828", "oom_killed": "#6a1b9a",
    "deadline_exceeded": "#ef6c00", "evicted": "#00838f", "image_pull": "#ad1457",
    "config_error": "#4e342e", "unschedulable": "#5d4037", "pod_deleted": "#455a64",
    "node_lost": "#37474f", "controller_interrupted": "#f9a825", "api_error": "#283593",
    "launch_error": "#8d6e63", "admission_refused": "#795548", "preempted": "#0277bd",
}
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.mono{font-family:ui-monospace,monospace;font-size:12px}
.pill{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-size:12px}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""
INLINE_ATTEMPTS = 2000
FAILED_ROWS = 500
TIME_SLICES = 120

Rows = Callable[[], Iterable[Mapping[str, Any]]]


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _pill(cls: str | None) -> str:
    colour = CLASS_COLOURS.get(cls or "", "#9e9e9e")
    return f'<span class="pill" style="background:{colour}">{_e(cls or "unfinished")}</span>'


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def histogram_svg(durations: list[float], *, bins: int = 20, width: int = 640, height: int = 180) -> str:
    if not durations:
        return "<p>no durations</p>"
    counts = [0] * bins
    low, high = min(durations), max(durations)
    for value in durations:
        counts[_bin(value, low, high, bins)] += 1
    return histogram_bins_svg(counts, low=low, high=high, width=width, height=height)


def _bin(value: float, low: float, high: float, bins: int) -> int:
    span = (high - low) or 1.0
    return max(0, min(bins - 1, int((value - low) / span * bins)))


def histogram_bins_svg(counts: list[int], *, low: float, high: float, width: int = 640, height: int = 180) -> str:
    bins = len(counts)
    span = (high - low) or 1.0
    top = max(counts) or 1
    bar_w = (width - 40) / bins
    bars = []
    for i, count in enumerate(counts):
        h = (height - 40) * count / top
        x = 30 + i * bar_w
        bars.append(f'<rect class="hist-bar" x="{x:.1f}" y="{height - 20 - h:.1f}" width="{bar_w - 2:.1f}" '
                    f'height="{h:.1f}" fill="#1565c0"><title>{count} attempt(s), '
                    f'{low + i * span / bins:.2f}-{low + (i + 1) * span / bins:.2f}s</title></rect>')
    return (f'<svg id="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'{"".join(bars)}<line x1="30" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" stroke="#555"/>'
            f'<text x="30" y="{height - 5}">{low:.2f}s</text>'
            f'<text x="{width - 60}" y="{height - 5}">{high:.2f}s</text>'
            f'<text x="2" y="14">{max(counts)}</text></svg>')


def timeline_svg(attempts: Sequence[Mapping[str, Any]], *, width: int = 900, row: int = 16) -> str:
    spans = []
    for attempt in attempts:
        start = _time(attempt.get("created_at")) or _time(attempt.get("started_at"))
        end = _time(attempt.get("finished_at"))
        if start is None:
            continue
        spans.append((attempt, start, end or start))
    if not spans:
        return "<p>no attempts</p>"
    t0 = min(s for _, s, _ in spans)
    t1 = max(e for _, _, e in spans)
    total = (t1 - t0).total_seconds() or 1.0
    label_w = 260
    scale = (width - label_w - 10) / total
    height = row * len(spans) + 24
    parts = []
    for i, (attempt, start, end) in enumerate(spans):
        y = i * row + 4
        x = label_w + (start - t0).total_seconds() * scale
        w = max(2.0, (end - start).total_seconds() * scale)
        cls = attempt.get("failure_class")
        label = f"{attempt['run_id']}/{attempt['phase_id']} #{attempt['attempt']}"
        parts.append(f'<text x="2" y="{y + 11}">{_e(label[:42])}</text>'
                     f'<rect class="timeline-bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 4}" '
                     f'fill="{CLASS_COLOURS.get(cls or "", "#9e9e9e")}"><title>{_e(label)}: {_e(cls)}, '
                     f'{(end - start).total_seconds():.2f}s</title></rect>')
    parts.append(f'<text x="{label_w}" y="{height - 4}">0s</text>'
                 f'<text x="{width - 60}" y="{height - 4}">{total:.1f}s</text>')
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'{"".join(parts)}</svg>')


@dataclass
class _Ranges:
    """First pass over the rows: what the bins of the second pass span."""

    count: int = 0
    low: float | None = None
    high: float | None = None
    t0: dt.datetime | None = None
    t1: dt.datetime | None = None

    def add(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        value = row.get("duration_seconds")
        if value is not None:
            self.low = value if self.low is None else min(self.low, value)
            self.high = value if self.high is None else max(self.high, value)
        span = _span(row)
        if span is not None:
            self.t0 = span[0] if self.t0 is None else min(self.t0, span[0])
            self.t1 = span[1] if self.t1 is None else max(self.t1, span[1])


@dataclass
class _Bins:
    """Second pass: the histogram's and the timeline's bins, and the first failed rows."""

    ranges: _Ranges
    histogram: list[int] = field(default_factory=lambda: [0] * 20)
    slices: list[dict[str, int]] = field(default_factory=lambda: [{} for _ in range(TIME_SLICES)])
    failed: list[Mapping[str, Any]] = field(default_factory=list)
    failed_total: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        r = self.ranges
        value = row.get("duration_seconds")
        if value is not None and r.low is not None and r.high is not None:
            self.histogram[_bin(value, r.low, r.high, len(self.histogram))] += 1
        span = _span(row)
        if span is not None and r.t0 is not None and r.t1 is not None:
            total = (r.t1 - r.t0).total_seconds() or 1.0
            first, last = (min(TIME_SLICES - 1, int((t - r.t0).total_seconds() / total * TIME_SLICES))
                           for t in span)
            cls = row.get("failure_class") or "unfinished"
            for i in range(first, last + 1):
                self.slices[i][cls] = self.slices[i].get(cls, 0) + 1
        if row.get("failure_class") != "succeeded":
            self.failed_total += 1
            if len(self.failed) < FAILED_ROWS:
                self.failed.append(row)


def _span(row: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    start = _time(row.get("created_at")) or _time(row.get("started_at"))
    if start is None:
        return None
    return start, _time(row.get("finished_at")) or start


def slices_svg(bins: _Bins, *, width: int = 900, height: int = 220) -> str:
    """The timeline of a large session: attempts running in each time slice, stacked by class."""
    r = bins.ranges
    if r.t0 is None or r.t1 is None:
        return "<p>no attempts</p>"
    total = (r.t1 - r.t0).total_seconds() or 1.0
    top = max((sum(s.values()) for s in bins.slices), default=0) or 1
    slice_w = (width - 40) / TIME_SLICES
    order = [*CLASS_COLOURS, "unfinished"]
    parts = []
    for i, counts in enumerate(bins.slices):
        y = float(height - 20)
        for cls in sorted(counts, key=lambda c: order.index(c) if c in order else len(order)):
            h = (height - 40) * counts[cls] / top
            y -= h
            parts.append(f'<rect class="timeline-slice" x="{30 + i * slice_w:.1f}" y="{y:.1f}" '
                         f'width="{max(1.0, slice_w - 1):.1f}" height="{h:.1f}" '
                         f'fill="{CLASS_COLOURS.get(cls, "#9e9e9e")}"><title>{counts[cls]} {_e(cls)} attempt(s) '
                         f'running at {i * total / TIME_SLICES:.1f}-{(i + 1) * total / TIME_SLICES:.1f}s'
                         f'</title></rect>')
    parts.append(f'<text x="30" y="{height - 5}">0s</text><text x="{width - 60}" y="{height - 5}">'
                 f'{total:.1f}s</text><text x="2" y="14">{top}</text>')
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'{"".join(parts)}</svg>')


def _attempt_tr(a: Mapping[str, Any]) -> str:
    logs = " ".join(f'<a href="file://{_e(p["url"])}">{_e(p["stream"])}</a> ({p["size_bytes"]} B)'
                    for p in a["logs"])
    exit_code = a["exit_code"] if a["exit_code"] is not None else f"null: {a.get('exit_code_reason')}"
    seconds = f"{a['duration_seconds']:.2f}" if a.get("duration_seconds") is not None else ""
    return (f"<tr><td>{_e(a['run_id'])}</td><td>{_e(a['phase_id'])}</td><td>{a['attempt']}</td>"
            f"<td>{_pill(a['failure_class'])}</td><td>{_e(exit_code)}</td><td>{seconds}</td>"
            f"<td>{_e(a['message'])}</td><td>{_e(a.get('node'))}</td><td>{logs}</td></tr>")


_ATTEMPTS_HEAD = ("<tr><th>run</th><th>phase</th><th>#</th><th>class</th><th>exit</th><th>s</th>"
                  "<th>message</th><th>node</th><th>logs</th></tr>")


def _link(report: Mapping[str, Any], key: str, text: str) -> str:
    url = (report.get("pointers") or {}).get(key)
    if not url:
        return f"{text} (not stored)"
    href = url if "://" in url else f"file://{url}"
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _head(report: Mapping[str, Any]) -> str:
    counts = report["counts"]
    identity = report.get("identity", {})
    stats = report["durations"]["container_seconds"]
    leaks = ", ".join(_e(x) for x in report["leaks"]) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>batchdrain {_e(report['session_id'])}</title>
<style>{CSS}</style></head><body>
<h1>Drain session {_e(report['session_id'])}</h1>
<p>executor <b>{_e(report['executor'])}</b>; started {_e(report['started_at'])}; ended {_e(report['ended_at'])}
{'; <b>interrupted</b>' if report['interrupted'] else ''}<br>
database {_e(identity.get('database_url'))}; phases get {_e(identity.get('phase_database_url'))};
API {_e(identity.get('api_url') or '(none)')}</p>
<p><b>{counts['attempts']}</b> attempts: <b>{counts['succeeded']}</b> succeeded, <b>{counts['failed']}</b> failed,
{counts['unfinished']} unfinished; {' '.join(f'{_pill(k)} {v}' for k, v in counts['by_class'].items())}</p>
<p>duration (s): min {stats['min']} &middot; median {stats['median']} &middot; mean {stats['mean']}
&middot; p95 {stats['p95']} &middot; max {stats['max']}; throughput {report['throughput']['phases_per_hour']}
phases/hour; leaks: {leaks}</p>
"""


def _more(attempts: int | None) -> str:
    return f" and {attempts} more attempt(s)" if attempts else ""


def _tail(report: Mapping[str, Any]) -> str:
    clusters = "".join(
        f"<tr><td>{_pill(c['failure_class'])}</td><td>{c['count']}</td><td class=mono>{_e(c['example'])}</td>"
        f"<td>{_e(', '.join(c['phases']))}{_more(c.get('phases_more'))}</td></tr>"
        for c in report["failure_clusters"])
    other = report.get("failure_clusters_other") or {}
    if other.get("attempts"):
        clusters += (f"<tr><td colspan=4>{other['attempts']} more failed attempt(s) in "
                     f"{'at least ' if other.get('clusters_at_least') else ''}{other['clusters']} other distinct "
                     "failure(s)</td></tr>")
    runs = "".join(
        f"<tr><td>{_e(run)}</td>" + "".join(f"<td>{v['before'][k]} &rarr; {v['after'][k]}</td>"
                                             for k in ("queued", "failed", "complete", "skipped")) + "</tr>"
        for run, v in report["runs"].items())
    return f"""<h2>Failure clusters</h2><table>
<tr><th>class</th><th>count</th><th>first error line</th><th>phases</th></tr>
{clusters or '<tr><td colspan=4>none</td></tr>'}</table>
<h2>Runs before &rarr; after</h2><table><tr><th>run</th><th>queued</th><th>failed</th><th>complete</th>
<th>parked</th></tr>{runs}</table>
"""


def html_chunks(report: Mapping[str, Any], rows: Rows) -> Iterator[str]:
    """The page a chunk at a time; ``rows`` starts the report's rows afresh on each call."""
    yield _head(report)
    if report["counts"]["attempts"] <= INLINE_ATTEMPTS:
        attempts = list(rows())  # bounded by INLINE_ATTEMPTS
        durations = [a["duration_seconds"] for a in attempts if a.get("duration_seconds") is not None]
        yield (f"<h2>Duration histogram</h2>{histogram_svg(durations)}\n"
               f"<h2>Timeline</h2>{timeline_svg(attempts)}\n")
        yield _tail(report)
        yield f"<h2>Attempts</h2><table>{_ATTEMPTS_HEAD}{''.join(_attempt_tr(a) for a in attempts)}</table>\n"
    else:
        ranges = _Ranges()
        for row in rows():
            ranges.add(row)
        bins = _Bins(ranges)
        for row in rows():
            bins.add(row)
        low, high = ranges.low or 0.0, ranges.high or 0.0
        yield (f"<h2>Duration histogram</h2>"
               f"{histogram_bins_svg(bins.histogram, low=low, high=high) if ranges.low is not None else ''}\n"
               f"<h2>Timeline</h2><p>attempts running in each of {TIME_SLICES} time slices, by class</p>"
               f"{slices_svg(bins)}\n")
        yield _tail(report)
        shown = f"the first {len(bins.failed)} of " if bins.failed_total > len(bins.failed) else ""
        yield (f"<h2>Attempts</h2><p>{ranges.count} attempts: every one is in "
               f"{_link(report, 'markdown', 'session.md')} and {_link(report, 'attempts', 'session.attempts.jsonl')}"
               f". Below: {shown}{bins.failed_total} that did not succeed.</p>"
               f"<table>{_ATTEMPTS_HEAD}{''.join(_attempt_tr(a) for a in bins.failed)}</table>\n")
    settings = "".join(f"<tr><td>{_e(k)}</td><td class=mono>{_e(v)}</td></tr>"
                       for k, v in sorted(report["settings"].items()))
    yield f"<h2>Settings</h2><table>{settings}</table>\n</body></html>\n"


def render_html(report: Mapping[str, Any], rows: Rows | None = None) -> str:
    """The whole page as one string; without ``rows``, the report's own ``attempts`` rows."""
    return "".join(html_chunks(report, rows or (lambda: report.get("attempts", []))))
