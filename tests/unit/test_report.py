"""Report building: stats, instant completes, clusters, identity checks, markdown."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

from batchdrain.db import AttemptRecord, SessionRecord
from batchdrain.domain import FailureClass, LogMode, LogPointer, RunCounts
from batchdrain.identity import Identity, identity_header
from batchdrain.report import (
    REPORT_SCHEMA,
    attempt_row,
    build_report,
    duration_stats,
    failure_clusters,
    identity_matches,
    instant_reason,
)
from batchdrain.report_markdown import render_markdown


def attempt(i, cls, line, run="r"):
    return AttemptRecord(
        attempt_pk=i, session_id="s", run_id=run, phase_id=f"p{i}", attempt=1, status="finished", executor="local",
        command=("true",), failure_class=FailureClass(cls), first_error_line=line, message=f"{cls}: {line}",
        exit_code=1, container_seconds=1.0 + i, total_seconds=1.5 + i, identity={"session_id": "s"},
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_duration_stats_nearest_rank():
    stats = duration_stats([float(v) for v in range(1, 21)])
    assert stats == {"count": 20, "min": 1.0, "median": 10.5, "mean": 10.5, "p95": 19.0, "max": 20.0}
    assert duration_stats([])["median"] is None


def test_instant_complete_needs_no_explaining_class():
    fast_ok = replace(attempt(1, "succeeded", None), container_seconds=0.01)
    fast_pull = replace(attempt(2, "image_pull", None), container_seconds=None, total_seconds=0.2)
    slow = replace(attempt(3, "succeeded", None), container_seconds=3.0)
    assert "succeeded in 0.010s" in (instant_reason(fast_ok, 0.5) or "")
    assert instant_reason(fast_pull, 0.5) is None
    assert instant_reason(slow, 0.5) is None


def test_a_kubelet_whole_second_is_no_instant_complete_but_a_measured_fraction_is():
    """Before: the kubelet's 0 s (anything under a second) flagged nearly every short phase."""
    def kube(seconds: float) -> AttemptRecord:
        return replace(attempt(1, "succeeded", None), executor="kubernetes", container_seconds=seconds)

    assert instant_reason(kube(0.0), 0.5) is None  # "under a second": not known to be under 0.5 s
    assert instant_reason(kube(1.0), 1.5) is None
    assert instant_reason(kube(0.0), 2.5) is not None  # under 1 s is surely under 2.5 s
    assert "succeeded in 0.120s" in (instant_reason(kube(0.12), 0.5) or "")  # a sub-second sighting
    local = replace(attempt(1, "succeeded", None), container_seconds=0.0)
    assert instant_reason(local, 0.5) is not None  # the local clock is not in whole seconds


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
    started = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    session = SessionRecord(session_id="s", status="running", executor="local", started_at=started,
                            heartbeat_at=started, identity={"database_url": "sqlite:///x.db"})
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


def test_attempt_row_is_the_report_schema_row():
    """The keys, their order and the JSON values of a report row (batchdrain.report/v1)."""
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    record = AttemptRecord(
        attempt_pk=7, session_id="s", run_id="r", phase_id="p", attempt=2, status="finished",
        executor="kubernetes", command=("python", "-c", "1"), created_at=t0, identity={"session_id": "s"},
        image="python:3.11", image_digest="sha256:ab", job_name="j", namespace="ns", pod_names=("j-x",),
        pod_uid="u", node="n", exit_code=0, exit_code_reason=None, admitted_at=t0 + dt.timedelta(seconds=1),
        started_at=t0, finished_at=t0,
        container_seconds=0.25, total_seconds=1.5, failure_class=FailureClass.SUCCEEDED, message="exit code 0",
        first_error_line=None, log_mode=LogMode.SPLIT,
        logs=(LogPointer(stream="stdout", url="/l/p.log", size_bytes=3, sha256="00"),),
        raw_status={"pid": None})
    row = attempt_row(record, instant_threshold=0.5, identity_check=None)
    assert json.dumps(row) == json.dumps({
        "session_id": "s", "run_id": "r", "phase_id": "p", "attempt": 2, "status": "finished",
        "executor": "kubernetes", "command": ["python", "-c", "1"], "image": "python:3.11",
        "image_digest": "sha256:ab", "job_name": "j", "namespace": "ns", "pod_names": ["j-x"], "pod_uid": "u",
        "node": "n", "exit_code": 0, "exit_code_reason": None, "created_at": "2026-01-01T12:00:00+00:00",
        "admitted_at": "2026-01-01T12:00:01+00:00", "started_at": "2026-01-01T12:00:00+00:00",
        "finished_at": "2026-01-01T12:00:00+00:00",
        "container_seconds": 0.25, "total_seconds": 1.5, "failure_class": "succeeded", "message": "exit code 0",
        "first_error_line": None, "log_mode": "split",
        "logs": [{"stream": "stdout", "url": "/l/p.log", "size_bytes": 3, "sha256": "00", "incomplete": None,
                  "stalled_seconds": 0.0}],
        "identity": {"session_id": "s"}, "raw_status": {"pid": None}, "duration_seconds": 0.25,
        "instant": "succeeded in 0.250s (< 0.5s) without an explaining class", "identity_check": "ok",
    })


def test_the_identity_check_reads_escaped_ids_back():
    ident = Identity("s", "run\nwith newline", "ph\t1", 1, "sqlite:///x", None)
    header = identity_header(ident, {})
    record = replace(attempt(1, "succeeded", None), run_id="run\nwith newline", phase_id="ph\t1",
                     identity={"session_id": "s"})
    expected = {"database_url": "sqlite:///x", "api_url": None}
    assert identity_matches(header, record, expected) is None
    forged = header.replace("run\\nwith newline", "other")
    assert "run='other'" in (identity_matches(forged, record, expected) or "")
