"""The session report as one self-contained HTML file: inline CSS and SVG, no scripts.

A person opens it from a laptop or a CI artefact with no server and no network, so
everything (histogram, per-attempt timeline, clusters, links to logs) is drawn here as
static SVG from the report JSON alone.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from typing import Any

CLASS_COLOURS = {
    "succeeded": "#2e7d32", "exit_code": "#c62828", "oom_killed": "#6a1b9a",
    "deadline_exceeded": "#ef6c00", "evicted": "#00838f", "image_pull": "#ad1457",
    "config_error": "#4e342e", "unschedulable": "#5d4037", "pod_deleted": "#455a64",
    "node_lost": "#37474f", "controller_interrupted": "#f9a825", "api_error": "#283593",
    "launch_error": "#8d6e63", "admission_refused": "#795548",
}
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.mono{font-family:ui-monospace,monospace;font-size:12px}
.pill{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-size:12px}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


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
    low, high = min(durations), max(durations)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in durations:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    top = max(counts)
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
            f'<text x="2" y="14">{top}</text></svg>')


def timeline_svg(attempts: list[dict[str, Any]], *, width: int = 900, row: int = 16) -> str:
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


def render_html(report: Mapping[str, Any]) -> str:
    counts = report["counts"]
    identity = report.get("identity", {})
    attempts = report["attempts"]
    durations = [a["duration_seconds"] for a in attempts if a.get("duration_seconds") is not None]
    rows = []
    for a in attempts:
        logs = " ".join(f'<a href="file://{_e(p["url"])}">{_e(p["stream"])}</a> ({p["size_bytes"]} B)'
                        for p in a["logs"])
        exit_code = a["exit_code"] if a["exit_code"] is not None else f"null: {a.get('exit_code_reason')}"
        seconds = f"{a['duration_seconds']:.2f}" if a.get("duration_seconds") is not None else ""
        rows.append(f"<tr><td>{_e(a['run_id'])}</td><td>{_e(a['phase_id'])}</td><td>{a['attempt']}</td>"
                    f"<td>{_pill(a['failure_class'])}</td><td>{_e(exit_code)}</td><td>{seconds}</td>"
                    f"<td>{_e(a['message'])}</td><td>{_e(a.get('node'))}</td><td>{logs}</td></tr>")
    clusters = "".join(
        f"<tr><td>{_pill(c['failure_class'])}</td><td>{c['count']}</td><td class=mono>{_e(c['example'])}</td>"
        f"<td>{_e(', '.join(c['phases']))}</td></tr>" for c in report["failure_clusters"])
    runs = "".join(
        f"<tr><td>{_e(run)}</td>" + "".join(f"<td>{v['before'][k]} &rarr; {v['after'][k]}</td>"
                                             for k in ("queued", "failed", "complete", "skipped")) + "</tr>"
        for run, v in report["runs"].items())
    settings = "".join(f"<tr><td>{_e(k)}</td><td class=mono>{_e(v)}</td></tr>"
                       for k, v in sorted(report["settings"].items()))
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
<h2>Duration histogram</h2>{histogram_svg(durations)}
<h2>Timeline</h2>{timeline_svg(attempts)}
<h2>Failure clusters</h2><table><tr><th>class</th><th>count</th><th>first error line</th><th>phases</th></tr>
{clusters or '<tr><td colspan=4>none</td></tr>'}</table>
<h2>Runs before &rarr; after</h2><table><tr><th>run</th><th>queued</th><th>failed</th><th>complete</th>
<th>parked</th></tr>{runs}</table>
<h2>Attempts</h2><table><tr><th>run</th><th>phase</th><th>#</th><th>class</th><th>exit</th><th>s</th>
<th>message</th><th>node</th><th>logs</th></tr>{''.join(rows)}</table>
<h2>Settings</h2><table>{settings}</table>
</body></html>
"""
