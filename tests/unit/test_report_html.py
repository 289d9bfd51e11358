"""The HTML report is self-contained and draws one timeline bar per attempt."""

from __future__ import annotations

import datetime as dt
import re

from batchdrain.db import AttemptRecord, SessionRecord
from batchdrain.domain import FailureClass, LogPointer, RunCounts
from batchdrain.report import build_report
from batchdrain.report_html import CLASS_COLOURS, render_html

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def make_attempt(i: int, cls: str) -> AttemptRecord:
    return AttemptRecord(
        attempt_pk=i, session_id="s", run_id="r<&>", phase_id=f"p{i}", attempt=1, status="finished",
        executor="local", command=("true",), failure_class=FailureClass(cls),
        first_error_line="boom" if cls != "succeeded" else None, message="m",
        exit_code=0 if cls == "succeeded" else 1, container_seconds=1.0 + i, total_seconds=1.2 + i,
        logs=(LogPointer(stream="stdout", url=f"/logs/p{i}.log", size_bytes=10, sha256="x"),),
        identity={"session_id": "s"}, created_at=T0 + dt.timedelta(seconds=i),
        started_at=T0 + dt.timedelta(seconds=i), finished_at=T0 + dt.timedelta(seconds=2 * i + 1))


def test_html_is_self_contained_with_one_bar_per_attempt():
    attempts = [make_attempt(i, "succeeded" if i % 3 else "exit_code") for i in range(7)]
    session = SessionRecord(session_id="s", status="running", executor="local", started_at=T0, heartbeat_at=T0,
                            settings={"parallelism": 2}, identity={"database_url": "sqlite:///x"})
    report = build_report(session=session, attempts=attempts, before={"r<&>": RunCounts(queued=7)},
                          after={"r<&>": RunCounts(complete=4, failed=3)}, leaks=[], identity_checks={},
                          skipped=[], instant_threshold=0.5, wall_seconds=20, interrupted=False)
    page = render_html(report)
    assert page.count('class="timeline-bar"') == 7
    assert page.count('class="hist-bar"') == 20
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "r&lt;&amp;&gt;" in page and "r<&>" not in page  # ids are escaped
    assert re.search(r'href="file:///logs/p3.log"', page)


def test_every_class_has_its_own_colour() -> None:
    assert set(CLASS_COLOURS) == {c.value for c in FailureClass}
    assert len(set(CLASS_COLOURS.values())) == len(CLASS_COLOURS)
