"""The end of a session: its report built from the database, checked against the logs, stored.

The report is read back from the attempt rows rather than from what the worker
threads saw, so that it says what the database will say tomorrow; each stored log's
identity header is read back too, as proof that what ran had the session's identity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from batchdrain.db import AttemptRecord
from batchdrain.domain import PhaseState
from batchdrain.logstore import LogSink, safe_name
from batchdrain.report import identity_matches, render_markdown
from batchdrain.report_html import render_html
from batchdrain.selection import Plan

HEADER_PROBE_BYTES = 4096


def skipped_rows(plan: Plan, not_claimed: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The report's ``skipped`` list: left out by selection (complete ones aside), or claimed by another."""
    return ([{"run_id": s.phase.run_id, "phase_id": s.phase.phase_id, "reason": s.reason}
             for s in plan.skipped if s.phase.state is not PhaseState.COMPLETE]
            + [{"run_id": r, "phase_id": p, "reason": "claimed by another controller first"}
               for r, p in not_claimed])


def _header(sink: LogSink, url: str) -> bytes:
    head = b""
    for chunk in sink.read(url):
        head += chunk
        if len(head) >= HEADER_PROBE_BYTES:
            break
    return head


def identity_checks(sink: LogSink, attempts: Sequence[AttemptRecord], *,
                    expected: dict[str, str | None]) -> dict[int, str | None]:
    """Per attempt, what is wrong with its stored logs' identity headers (None: nothing)."""
    checks: dict[int, str | None] = {}
    for attempt in attempts:
        problems: list[str] = []
        for pointer in attempt.logs:
            try:
                head = _header(sink, pointer.url)
            except OSError as err:
                problems.append(f"{pointer.stream} log unreadable: {err}")
                continue
            problem = identity_matches(head.decode("utf-8", errors="replace"), attempt, expected)
            if problem:
                problems.append(f"{pointer.stream}: {problem}")
        if not attempt.logs:
            problems.append("no log stored")
        checks[attempt.attempt_pk] = "; ".join(problems) or None
    return checks


def store_report(sink: LogSink, session_id: str, report: dict[str, Any]) -> str | None:
    """Write the report files; on a failing log store, say why (the database keeps the report)."""
    keys = {fmt: f"{safe_name(session_id)}/session.{ext}"
            for fmt, ext in (("json", "json"), ("markdown", "md"), ("html", "html"))}
    report["pointers"] = {fmt: sink.url_for(key) for fmt, key in keys.items()}
    renderers: dict[str, Callable[[], bytes]] = {
        # Compact, so that the C encoder does it: indented, the pure-Python one took
        # four times the document's size in memory (the document is O(attempts)).
        "json": lambda: json.dumps(report, default=str, separators=(",", ":")).encode(),
        "markdown": lambda: render_markdown(report).encode(),
        "html": lambda: render_html(report).encode(),
    }
    for fmt, render in renderers.items():
        try:
            sink.put(keys[fmt], render())
        except OSError as err:
            # One failure is enough: each further put would wait out the same bound.
            report["pointers"] = {}
            return f"report files not stored in {sink.location()}: {type(err).__name__}: {err}"
    return None
