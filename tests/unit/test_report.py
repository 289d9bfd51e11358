"""Report building: stats, instant completes, clusters, identity checks, markdown."""

from __future__ import annotations

import datetime as dt

from batchdrain.domain import RunCounts
from batchdrain.report import (
    REPORT_SCHEMA,
    build_report,
    duration_stats,
    failure_clusters,
    identity_matches,
    instant_reason,
    render_markdown,
)


def test_duration_stats_nearest_rank():
    stats = duration_stats([float(v) for v in range(1, 21)])
    assert stats == {"count": 20, "min": 1.0, "median": 10.5, "mean": 10.5, "p95": 19.0, "max": 20.0}
    assert duration_stats([])["median"] is None


def test_instant_complete_needs_no_explaining_class():
    fast_ok = {"failure_class": "succeeded", "container_seconds": 0.01}
    fast_pull = {"failure_class": "image_pull", "container_seconds": None, "total_seconds": 0.2}
    slow = {"failure_class": "succeeded", "container_seconds": 3.0}
    assert "succeeded in 0.010s" in (instant_reason(fast_ok, 0.5) or "")
    assert instant_reason(fast_pull, 0.5) is None
    assert instant_reason(slow, 0.5) is None


def attempt(i, cls, line, run="r"):
    return {"id": i, "session_id": "s", "run_id": run, "phase_id": f"p{i}", "attempt": 1, "status": "finished",
            "failure_class": cls, "first_error_line": line, "message": f"{cls}: {line}", "exit_code": 1,
            "exit_code_reason": None, "container_seconds": 1.0 + i, "total_seconds": 1.5 + i, "logs": [],
            "identity": {"session_id": "s"}, "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}


def test_failure_clusters_group_same_error():
    attempts = [attempt(1, "exit_code", "ValueError: row 17"), attempt(2, "exit_code", "ValueError: row 99"),
                attempt(3, "oom_killed", None), attempt(4, "succeeded", None)]
    clusters = failure_clusters(attempts)
    assert [(c["failure_class"], c["count"]) for c in clusters] == [("exit_code", 2), ("oom_killed", 1)]
    assert clusters[0]["phases"] == ["r/p1", "r/p2"]


HEADER = """[batchdrain] ===== ENVIRONMENT IDENTITY =====
[batchdrain] session: s
[batchdrain] run: r
[batchdrain] phase: p1
[batchdrain] attempt: 1
[batchdrain] DATABASE_URL: postgresql://u:***@db/x
[batchdrain] API_URL: http://api
"""


def test_identity_header_check():
    row = attempt(1, "succeeded", None)
    expected = {"database_url": "postgresql://u:***@db/x", "api_url": "http://api"}
    assert identity_matches(HEADER, row, expected) is None
    problem = identity_matches(HEADER, row, {**expected, "api_url": "http://other"})
    assert problem is not None and "API_URL" in problem


def test_build_and_render_report():
    attempts = [attempt(1, "succeeded", None), attempt(2, "exit_code", "KeyError: 'x'")]
    session = {"session_id": "s", "executor": "local", "started_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
               "settings": {}, "identity": {"database_url": "sqlite:///x.db"}}
    report = build_report(session=session, attempts=attempts,
                          before={"r": RunCounts(queued=2)}, after={"r": RunCounts(complete=1, failed=1)},
                          leaks=[], identity_checks={1: None, 2: "no log stored"}, skipped=[],
                          instant_threshold=0.5, wall_seconds=10.0, interrupted=False)
    assert report["schema"] == REPORT_SCHEMA
    assert report["counts"]["succeeded"] == 1 and report["counts"]["failed"] == 1
    assert report["runs"]["r"]["before"]["queued"] == 2 and report["runs"]["r"]["after"]["failed"] == 1
    assert report["identity_mismatches"] == [{"run_id": "r", "phase_id": "p2", "attempt": 1,
                                              "problem": "no log stored"}]
    assert report["throughput"]["phases_per_hour"] == 720.0
    md = render_markdown(report)
    assert "| r | 2 -> 0 | 0 -> 1 | 0 -> 1 | 0 -> 0 |" in md
    assert "KeyError: 'x'" in md and "Unknown error" not in md
