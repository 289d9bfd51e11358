"""Reports of sessions with thousands of attempts, on real SQLite and Postgres (issue 15.1).

The attempts are inserted directly (a drain of that size belongs to the benchmark):
the database's aggregates must equal the report's Python definitions, every attempt
must reach the report files and the ``report`` command page by page, reports stored
by earlier versions (report/v1, every row inside) must still be read by every
command, and ``logs`` must read one phase's attempts and no report.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, insert, update

from batchdrain.db import Database
from batchdrain.db.models import AttemptRow
from batchdrain.domain import RunCounts
from batchdrain.drain.reporting import ReportFiles
from batchdrain.logstore import FileLogSink
from batchdrain.report import build_report, build_summary, tally_of
from batchdrain.report_lists import IDENTITY_EXAMPLES
from tests.integration.helpers import cli

N = 3000  # three whole pages: the last page read is empty
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
CLASSES = ["succeeded"] * 6 + ["exit_code", "oom_killed", "deadline_exceeded"]


def _rows(session_id: str, n: int, *, store: Path, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        cls = rng.choice(CLASSES)
        container = rng.choice([None, round(rng.uniform(0, 20), 4), 1.0])
        total = None if rng.random() < 0.05 else round((container or 0) + rng.uniform(0, 2), 4)
        log = store / f"p{i}.log"
        # a third of them queued in Kueue, admitted after a wait to the microsecond
        admitted = None if i % 3 else T0 + dt.timedelta(seconds=i + rng.uniform(0, 30))
        rows.append({
            "session_id": session_id, "run_id": f"run-{i % 50}", "phase_id": f"p{i}", "attempt": 1,
            "status": "finished", "executor": "local", "command": ["true"], "created_at": T0 + dt.timedelta(seconds=i),
            "admitted_at": admitted,
            "finished_at": T0 + dt.timedelta(seconds=i + 3), "container_seconds": container, "total_seconds": total,
            "failure_class": cls, "exit_code": 0 if cls == "succeeded" else 1, "message": f"{cls} {i}",
            "first_error_line": None if cls == "succeeded" else f"Error: item {i}",
            "identity": {"session_id": session_id},
            "logs": [{"stream": "stdout", "url": str(log), "size_bytes": 4, "sha256": "x"}], "adopted_by": None,
        })
    return rows


@pytest.fixture
def seeded(database_url: str, tmp_path: Path) -> Iterator[tuple[Database, str, Path]]:
    db = Database(database_url)
    db.upgrade()
    store = tmp_path / "logs"
    store.mkdir()
    session_id = db.create_session(executor="local", settings={"instant_threshold_seconds": 0.5}, identity={})
    other = db.create_session(executor="local", settings={}, identity={})
    rows = _rows(session_id, N, store=store)
    # Ten attempts another session launched and this one adopted: the session's too.
    adopted = _rows(other, 10, store=store, seed=4)
    for row in adopted:
        row.update(phase_id=f"adopted-{row['phase_id']}", adopted_by=session_id)
    (store / "p7.log").write_bytes(b"one phase's log\n")
    with db.engine.begin() as conn:
        conn.execute(insert(AttemptRow), adopted[:5] + rows + adopted[5:])
    try:
        yield db, session_id, store
    finally:
        db.dispose()


def test_the_database_aggregates_are_the_reports_definitions(seeded: tuple[Database, str, Path]) -> None:
    db, session_id, _ = seeded
    everything = db.attempts(session_id=session_id)
    assert len(everything) == N + 10
    assert db.attempt_tally(session_id) == tally_of(everything)
    waits = db.attempt_tally(session_id).durations["queue_wait_seconds"]
    assert waits.count == sum(a.admitted_at is not None for a in everything) > 1000 and waits.max is not None
    assert 0 < waits.max <= 30
    paged = list(db.session_attempts(session_id))
    assert [a.attempt_pk for a in paged] == [a.attempt_pk for a in everything]  # every one, once, in id order
    # One attempt fewer flips the parity of every measure's count (the median of an
    # even count is the mean of two values, of an odd one a single observed value).
    gone = next(a for a in everything if a.container_seconds is not None and a.total_seconds is not None)
    with db.engine.begin() as conn:
        conn.execute(delete(AttemptRow).where(AttemptRow.id == gone.attempt_pk))
    rest = [a for a in everything if a is not gone]
    assert db.attempt_tally(session_id) == tally_of(rest)
    parity = {k: (v.count % 2, w.count % 2) for (k, v), w in zip(tally_of(everything).durations.items(),
                                                                tally_of(rest).durations.values(), strict=True)}
    assert all(old != new for old, new in parity.values()), parity


def _stored_report(db: Database, session_id: str, store: Path) -> dict[str, Any]:
    """What the drain's end does, on the seeded session: one pass, then the documents."""
    files = ReportFiles(FileLogSink(store), session_id)
    lists = files.gather(db.session_attempts(session_id), expected={"database_url": None, "api_url": None},
                         instant_threshold=0.5)
    summary = build_summary(session=db.session(session_id, report=False), tally=db.attempt_tally(session_id),
                            lists=lists, before={"run-0": RunCounts()}, after={}, leaks=[], skipped=[],
                            wall_seconds=60.0, interrupted=False)
    summary.update(notes=[], waiting=[], left_for_adoption=[], halted=None)
    assert files.write_documents(summary) is None
    db.end_session(session_id, status="complete", counts=summary["counts"], report=summary)
    return summary


def test_a_large_sessions_files_and_report_hold_every_attempt(seeded: tuple[Database, str, Path], capsys: Any,
                                                              tmp_path: Path) -> None:
    db, session_id, store = seeded
    summary = _stored_report(db, session_id, store)
    assert "attempts" not in summary and summary["counts"]["attempts"] == N + 10
    # The row keeps the summary: capped lists (every attempt here is an identity mismatch), no rows.
    assert len(summary["identity_mismatches"]) == IDENTITY_EXAMPLES < summary["counts"]["identity_mismatches"]
    assert len(json.dumps(summary)) < 1_000_000
    document = json.loads((store / session_id / "session.json").read_text())
    assert len(document["attempts"]) == N + 10
    assert {r["phase_id"] for r in document["attempts"]} >= {f"p{i}" for i in range(N)}
    assert len((store / session_id / "session.attempts.jsonl").read_text().splitlines()) == N + 10
    url = db.url
    code, out, _ = cli(capsys, "report", session_id, "--database-url", url, "--format", "json")
    assert code == 0
    shown = json.loads(out)
    assert len(shown["attempts"]) == N + 10 and shown["counts"] == summary["counts"]
    assert shown["attempts"][5]["phase_id"] == "p0"  # adopted ones first: id order
    assert shown["attempts"][12]["identity_check"] == summary["identity_mismatches"][12]["problem"]
    html = tmp_path / "r.html"
    assert cli(capsys, "report", session_id, "--database-url", url, "--format", "html", "-o", str(html))[0] == 0
    page = html.read_text()
    assert "timeline-slice" in page and 'class="timeline-bar"' not in page and "session.md" in page
    code, md, _ = cli(capsys, "report", session_id, "--database-url", url)
    assert code == 0 and len(re.findall(r"^\| run-\d+ \| (adopted-)?p\d+ \| 1 \|", md, re.M)) == N + 10
    code, out, _ = cli(capsys, "sessions", "show", session_id, "--database-url", url, "--limit", "20")
    assert code == 0 and f"{N + 10 - 20} more: see `batchdrain report {session_id}`" in out
    assert "exit_code" in out and "succeeded" not in out.split("Attempts")[1]  # failures first
    stats = summary["durations"]["container_seconds"]
    assert f"container_seconds: min {stats['min']} median {stats['median']}" in out  # from the summary
    code, out, _ = cli(capsys, "sessions", "list", "--database-url", url)
    assert code == 0 and session_id in out and str(N + 10) in out


def _v1_report(db: Database, session_id: str) -> dict[str, Any]:
    """A report as earlier versions stored it: schema v1, every attempt row inside."""
    attempts = db.attempts(session_id=session_id)
    report = build_report(session=db.session(session_id), attempts=attempts, before={}, after={}, leaks=[],
                          identity_checks={a.attempt_pk: None for a in attempts}, skipped=[], instant_threshold=0.5,
                          wall_seconds=60.0, interrupted=False)
    for key in ("failure_clusters_other", "left_running", "span"):
        report.pop(key)
    for key in ("instant_completes", "identity_mismatches", "failure_clusters"):
        report["counts"].pop(key)
    for cluster in report["failure_clusters"]:
        cluster.pop("phases_more")
    return {**report, "schema": "batchdrain.report/v1", "pointers": {}, "notes": []}


def test_a_v1_report_is_still_read_by_every_command(seeded: tuple[Database, str, Path], capsys: Any) -> None:
    db, session_id, _ = seeded
    v1 = _v1_report(db, session_id)
    db.end_session(session_id, status="complete", counts=v1["counts"], report=v1)
    url = ["--database-url", db.url]
    code, out, _ = cli(capsys, "report", session_id, "--format", "json", *url)
    shown = json.loads(out)
    assert code == 0 and shown["schema"] == "batchdrain.report/v1" and len(shown["attempts"]) == N + 10
    assert all(r["identity_check"] == "ok" for r in shown["attempts"])
    for fmt in ("md", "html"):
        assert cli(capsys, "report", session_id, "--format", fmt, *url)[0] == 0
    code, out, _ = cli(capsys, "sessions", "show", session_id, *url)
    assert code == 0 and f"{N + 10} attempt(s)" in out and "total_seconds: min" in out
    assert cli(capsys, "sessions", "list", *url)[0] == 0
    code, out, _ = cli(capsys, "logs", session_id, "p7", *url)
    assert code == 0 and out == "one phase's log\n"


def test_logs_reads_one_phase_and_no_report(seeded: tuple[Database, str, Path], capsys: Any) -> None:
    db, session_id, _ = seeded
    v1 = _v1_report(db, session_id)
    db.end_session(session_id, status="complete", counts=v1["counts"], report=v1)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        code, out, _ = cli(capsys, "logs", session_id, "p7", "--database-url", db.url)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert code == 0 and out == "one phase's log\n"
    reads = [s for s in statements if s.startswith("SELECT")]
    assert not [s for s in reads if "drain_sessions.report" in s], reads
    attempt_reads = [s for s in reads if "FROM attempts" in s]
    assert attempt_reads and all("attempts.phase_id =" in s for s in attempt_reads), attempt_reads


def test_watch_counts_in_sql_and_lists_the_running_attempts(seeded: tuple[Database, str, Path],
                                                             capsys: Any) -> None:
    db, session_id, _ = seeded
    with db.engine.begin() as conn:
        conn.execute(update(AttemptRow).where(AttemptRow.phase_id.in_(["p1", "p2", "p3"]))
                     .values(status="running", failure_class=None, finished_at=None))
    tally = db.attempt_tally(session_id, durations=False)
    code, out, _ = cli(capsys, "sessions", "watch", session_id, "--database-url", db.url, "--timeout", "0")
    assert code == 0
    ok = tally.by_class["succeeded"]
    assert f"3 running {ok} succeeded {tally.finished - ok} failed" in " ".join(out.split()), out
    assert all(f" {p} " in out for p in ("p1", "p2", "p3")) and " p4 " not in out
