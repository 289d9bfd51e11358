"""Reports in bounded memory: the accumulator's caps and counts, the streamed documents.

The reference is report/v1's ``build_report`` as it was (every attempt in memory),
kept here verbatim: under the caps, the streamed summary must say exactly what it said.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from batchdrain.classify import normalise_error_line
from batchdrain.db import AttemptRecord, SessionRecord
from batchdrain.domain import FailureClass, LogPointer, RunCounts
from batchdrain.drain.reporting import ReportFiles
from batchdrain.logstore import FileLogSink, open_log_sink
from batchdrain.report import (
    as_summary,
    attempt_duration,
    attempt_row,
    build_report,
    build_summary,
    checked_row,
    duration_stats,
    json_chunks,
    stored_rows,
    tally_of,
    where_they_went,
)
from batchdrain.report_html import INLINE_ATTEMPTS, render_html
from batchdrain.report_lists import CLUSTER_PHASES, CLUSTERS, IDENTITY_EXAMPLES, INSTANT_EXAMPLES, ReportAccumulator
from batchdrain.report_markdown import markdown_chunks, render_markdown

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
CLASSES = ["succeeded", "succeeded", "exit_code", "oom_killed", "deadline_exceeded", "image_pull"]
SESSION = SessionRecord(session_id="s", status="running", executor="local", started_at=T0, heartbeat_at=T0,
                        settings={"instant_threshold_seconds": 0.5}, identity={"database_url": "sqlite:///x"})


def make(i: int, cls: str | None, *, line: str | None = None, seconds: float | None = 1.0,
         status: str = "finished", run: str = "r", phase: str | None = None) -> AttemptRecord:
    return AttemptRecord(
        attempt_pk=i, session_id="s", run_id=run, phase_id=phase or f"p{i}", attempt=1, status=status,
        executor="local", command=("true",), failure_class=FailureClass(cls) if cls else None,
        first_error_line=line, message=f"m{i}", exit_code=0 if cls == "succeeded" else 1,
        container_seconds=seconds, total_seconds=None if seconds is None else seconds + 0.25,
        logs=(LogPointer(stream="stdout", url=f"/l/p{i}.log", size_bytes=1, sha256="x"),),
        identity={"session_id": "s"}, created_at=T0 + dt.timedelta(seconds=i),
        finished_at=T0 + dt.timedelta(seconds=i + 2) if status == "finished" else None)


def word(i: int) -> str:
    """A distinct word per number: error lines differ after normalisation (which hides digits)."""
    letters = ""
    while True:
        i, digit = divmod(i, 26)
        letters += chr(97 + digit)
        if not i:
            return letters


def mixed(n: int, seed: int = 7) -> list[AttemptRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        cls = rng.choice(CLASSES) if i % 17 else None
        line = rng.choice([None, f"ValueError: row {i}", "KeyError: 'x'", f"E{i % 3}"]) if cls != "succeeded" else None
        seconds = rng.choice([None, 0.01, rng.uniform(0, 30)])
        out.append(make(i, cls, line=line, seconds=seconds, status="running" if cls is None else "finished",
                        run=f"r{i % 4}"))
    return out


# -- report/v1's builder, verbatim but for the names ------------------------------------
def v1_failure_clusters(attempts: Sequence[AttemptRecord]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[AttemptRecord]] = defaultdict(list)
    for attempt in attempts:
        if attempt.failure_class in (None, FailureClass.SUCCEEDED):
            continue
        line = attempt.first_error_line or ""
        groups[(str(attempt.failure_class), normalise_error_line(line))].append(attempt)
    clusters: list[dict[str, Any]] = []
    for (cls, signature), members in groups.items():
        clusters.append({
            "failure_class": cls, "signature": signature or "(no error line)",
            "example": members[0].first_error_line or members[0].message, "count": len(members),
            "phases": sorted({f"{a.run_id}/{a.phase_id}" for a in members}),
        })
    clusters.sort(key=lambda c: (-c["count"], c["failure_class"], c["signature"]))
    return clusters


def v1_build_report(*, attempts: Sequence[AttemptRecord], identity_checks: dict[int, str | None],
                    skipped: list[dict[str, str]], instant_threshold: float, wall_seconds: float) -> dict[str, Any]:
    rows = [attempt_row(a, instant_threshold=instant_threshold,
                        identity_check=identity_checks.get(a.attempt_pk, "not checked")) for a in attempts]
    by_class: dict[str, int] = defaultdict(int)
    for attempt in attempts:
        by_class[attempt.failure_class.value if attempt.failure_class else "unfinished"] += 1
    durations = [d for d in (attempt_duration(a) for a in attempts) if d is not None]
    totals = [a.total_seconds for a in attempts if a.total_seconds is not None]
    overheads = [a.total_seconds - a.container_seconds for a in attempts
                 if a.total_seconds is not None and a.container_seconds is not None]
    finished = [a for a in attempts if a.status == "finished"]
    return {
        "counts": {
            "attempts": len(attempts), "succeeded": by_class.get("succeeded", 0),
            "failed": len(finished) - by_class.get("succeeded", 0), "unfinished": len(attempts) - len(finished),
            "by_class": dict(sorted(by_class.items())), "skipped": len(skipped),
        },
        "durations": {"container_seconds": duration_stats(durations), "total_seconds": duration_stats(totals),
                      "controller_overhead_seconds": duration_stats(overheads)},
        "throughput": {"wall_seconds": round(wall_seconds, 3),
                       "phases_per_hour": round(len(finished) / wall_seconds * 3600, 1) if wall_seconds else None},
        "instant_completes": [{"run_id": r["run_id"], "phase_id": r["phase_id"], "attempt": r["attempt"],
                               "why": r["instant"]} for r in rows if r["instant"]],
        "failure_clusters": v1_failure_clusters(attempts),
        "identity_mismatches": [{"run_id": r["run_id"], "phase_id": r["phase_id"], "attempt": r["attempt"],
                                 "problem": r["identity_check"]} for r in rows if r["identity_check"] != "ok"],
        "skipped": skipped,
        "attempts": rows,
    }


def streamed(attempts: Iterable[AttemptRecord], checks: dict[int, str | None], *, skipped: list[dict[str, str]],
             tally_from: Sequence[AttemptRecord]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lists = ReportAccumulator()
    rows = [checked_row(a, lists, instant_threshold=0.5, identity_check=checks.get(a.attempt_pk, "not checked"))
            for a in attempts]
    summary = build_summary(session=SESSION, tally=tally_of(tally_from), lists=lists, before={"r": RunCounts()},
                            after={}, leaks=[], skipped=skipped, wall_seconds=12.5, interrupted=False)
    return summary, rows


@pytest.mark.parametrize("n", [0, 1, 2, 5, 60, 300])
def test_the_streamed_summary_says_what_v1_said_for_every_key(n: int) -> None:
    attempts = mixed(n)
    checks = {a.attempt_pk: (None if a.attempt_pk % 5 else "no log stored") for a in attempts}
    skipped = [{"run_id": "r", "phase_id": f"s{i}", "reason": "why"} for i in range(3)]
    old = v1_build_report(attempts=attempts, identity_checks=checks, skipped=skipped, instant_threshold=0.5,
                          wall_seconds=12.5)
    summary, rows = streamed(attempts, checks, skipped=skipped, tally_from=attempts)
    assert rows == old["attempts"]
    for key in ("throughput", "instant_completes", "identity_mismatches", "skipped"):
        assert summary[key] == old[key], key
    # v1's measures unchanged; the queue wait is new (none of these attempts was queued)
    assert {k: summary["durations"][k] for k in old["durations"]} == old["durations"]
    assert summary["durations"]["queue_wait_seconds"]["count"] == 0
    assert {k: summary["counts"][k] for k in old["counts"]} == old["counts"]
    clusters = summary["failure_clusters"]
    assert all(c.pop("phases_more") == 0 for c in clusters)
    assert clusters == old["failure_clusters"]
    assert summary["counts"]["instant_completes"] == len(old["instant_completes"])
    assert summary["counts"]["identity_mismatches"] == len(old["identity_mismatches"])
    assert summary["counts"]["failure_clusters"] == len(old["failure_clusters"])
    assert summary["failure_clusters_other"] == {"clusters": 0, "clusters_at_least": False, "attempts": 0}
    assert summary["left_running"] == [{"run_id": a.run_id, "phase_id": a.phase_id, "attempt": 1}
                                       for a in attempts if a.status == "running"]
    assert "attempts" not in summary


def test_the_lists_keep_their_first_examples_and_count_every_attempt() -> None:
    lists = ReportAccumulator()
    total = CLUSTERS + 30
    for i in range(1, total + 1):  # one distinct failure each, every one instant and mismatched
        lists.add(make(i, "exit_code", line=f"error kind {word(i)}", seconds=0.01),
                  instant="fast", identity_check="bad")
    for i in range(IDENTITY_EXAMPLES):
        lists.add(make(total + i + 1, "succeeded", seconds=0.01), instant="fast", identity_check="bad")
    summary, counts = lists.summary(), lists.counts()
    assert len(summary["failure_clusters"]) == CLUSTERS
    assert summary["failure_clusters_other"] == {"clusters": 30, "clusters_at_least": False, "attempts": 30}
    assert counts["failure_clusters"] == total
    assert len(summary["instant_completes"]) == INSTANT_EXAMPLES
    assert counts["instant_completes"] == total + IDENTITY_EXAMPLES
    assert len(summary["identity_mismatches"]) == IDENTITY_EXAMPLES
    assert counts["identity_mismatches"] == total + IDENTITY_EXAMPLES
    assert summary["identity_mismatches"][0]["phase_id"] == "p1"  # the first ones, in order


def test_a_cluster_names_its_first_phases_and_counts_the_rest() -> None:
    lists = ReportAccumulator()
    for i in range(CLUSTER_PHASES + 20):
        lists.add(make(i + 1, "oom_killed"), instant=None, identity_check="ok")
    lists.add(make(999, "oom_killed", phase="p1"), instant=None, identity_check="ok")  # a listed phase again
    (cluster,) = lists.failure_clusters()
    assert cluster["count"] == CLUSTER_PHASES + 21
    assert len(cluster["phases"]) == CLUSTER_PHASES and cluster["phases_more"] == 20


def test_distinct_failures_past_the_cap_are_counted_up_to_a_bound() -> None:
    lists = ReportAccumulator()
    for i in range(3 * CLUSTERS):
        lists.add(make(i + 1, "exit_code", line=f"error {word(i)}"),
                  instant=None, identity_check="ok")
    other = lists.summary()["failure_clusters_other"]
    assert other == {"clusters": CLUSTERS, "clusters_at_least": True, "attempts": 2 * CLUSTERS}
    assert "at least 200 other distinct" in "".join(markdown_chunks({**base_report(), **lists.summary()}, []))


def base_report(**extra: Any) -> dict[str, Any]:
    report = build_report(session=SESSION, attempts=[], before={}, after={}, leaks=[], identity_checks={},
                          skipped=[], instant_threshold=0.5, wall_seconds=1.0, interrupted=False)
    report.pop("attempts")
    return {**report, **extra}


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_the_json_document_is_the_summary_then_every_row(indent: int | None, n: int) -> None:
    summary = base_report()
    rows = [{"run_id": "r", "i": i, "text": "quote \" and ] and }"} for i in range(n)]
    text = "".join(json_chunks(summary, (json.dumps(r) for r in rows), indent=indent))
    assert json.loads(text) == {**summary, "attempts": rows}
    assert list(json.loads(text))[-1] == "attempts"


def test_capped_lists_say_how_many_more_in_markdown() -> None:
    report = base_report(instant_completes=[{"run_id": "r", "phase_id": "p", "attempt": 1, "why": "fast"}])
    report["counts"] = {**report["counts"], "instant_completes": 41}
    md = render_markdown(report)
    assert "- r/p #1: fast\n- ... and 40 more (the first 1 are listed)" in md


def test_rows_of_a_stored_summary_take_identity_checks_from_its_list() -> None:
    attempts = [make(i, "succeeded") for i in range(1, 4)]
    listed = [{"run_id": "r", "phase_id": "p2", "attempt": 1, "problem": "no log stored"}]
    complete = {**base_report(identity_mismatches=listed)}
    complete["counts"] = {**complete["counts"], "identity_mismatches": 1}
    assert [r["identity_check"] for r in stored_rows(complete, attempts)] == ["ok", "no log stored", "ok"]
    truncated = {**complete, "counts": {**complete["counts"], "identity_mismatches": 2}}
    checks = [r["identity_check"] for r in stored_rows(truncated, attempts)]
    assert checks[1] == "no log stored" and checks[0].startswith("not listed") and checks[2] == checks[0]
    assert all(r["instant"] is None for r in stored_rows(complete, attempts))  # 1 s is over the 0.5 s threshold


def test_a_v1_report_reads_as_a_summary_that_knows_what_it_left_running() -> None:
    attempts = [make(1, "succeeded"), make(2, None, status="running")]
    v1 = {**build_report(session=SESSION, attempts=attempts, before={}, after={}, leaks=[], identity_checks={},
                         skipped=[], instant_threshold=0.5, wall_seconds=1.0, interrupted=True),
          "schema": "batchdrain.report/v1"}
    for key in ("failure_clusters_other", "left_running", "span"):
        v1.pop(key)
    for name in ("instant_completes", "identity_mismatches", "failure_clusters"):
        v1["counts"].pop(name)
    summary = as_summary(v1)
    assert "attempts" not in summary and summary["left_running"] == [{"run_id": "r", "phase_id": "p2", "attempt": 1}]
    assert summary["counts"]["identity_mismatches"] == 2  # "not checked", both
    adopted = AttemptRecord(**{**{f: getattr(attempts[1], f) for f in AttemptRecord.__slots__},
                               "status": "finished", "failure_class": FailureClass.SUCCEEDED, "adopted_by": "s2"})
    went = where_they_went(summary, [adopted])
    assert went["where_they_went"] == [{"run_id": "r", "phase_id": "p2", "attempt": 1, "adopted_by": "s2",
                                        "outcome": "succeeded: m2"}]


def test_a_large_session_is_one_picture_with_bins_and_a_link() -> None:
    attempts = mixed(INLINE_ATTEMPTS + 500)
    report = build_report(session=SESSION, attempts=attempts, before={}, after={}, leaks=[], identity_checks={},
                          skipped=[], instant_threshold=0.5, wall_seconds=100.0, interrupted=False)
    report["pointers"] = {"markdown": "/store/s/session.md", "attempts": "s3://b/s/session.attempts.jsonl"}
    page = render_html(report)
    assert 'class="timeline-bar"' not in page and page.count('class="hist-bar"') == 20
    assert 0 < page.count('class="timeline-slice"') <= 120 * 7
    assert 'href="file:///store/s/session.md"' in page and 'href="s3://b/s/session.attempts.jsonl"' in page
    failed = sum(a.failure_class is not FailureClass.SUCCEEDED for a in attempts)
    assert f"the first 500 of {failed} that did not succeed" in page
    assert page.count("<tr><td>r") == 500
    small = render_html(build_report(session=SESSION, attempts=attempts[:50], before={}, after={}, leaks=[],
                                     identity_checks={}, skipped=[], instant_threshold=0.5, wall_seconds=1.0,
                                     interrupted=False))
    assert small.count('class="timeline-bar"') == 50


class _Chunks:
    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at

    def chunks(self) -> Iterator[bytes]:
        for i in range(10):
            if i == self.fail_at:
                raise OSError(5, "input/output error")
            yield b"x" * 1000


def test_a_streamed_put_is_whole_or_absent(tmp_path: Path) -> None:
    sink = FileLogSink(tmp_path)
    assert sink.put_stream("s/a.txt", _Chunks(99).chunks()) == str(tmp_path / "s/a.txt")
    assert (tmp_path / "s/a.txt").read_bytes() == b"x" * 10_000
    with pytest.raises(OSError, match="input/output"):
        sink.put_stream("s/a.txt", _Chunks(4).chunks())
    assert (tmp_path / "s/a.txt").read_bytes() == b"x" * 10_000  # the old file, whole
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["a.txt"]  # no temporary left


def test_a_streamed_put_to_an_object_store_uploads_whole_or_nothing() -> None:
    sink = open_log_sink("memory://bd-stream/reports")
    url = sink.put_stream("s/a.txt", _Chunks(99).chunks())
    assert b"".join(sink.read(url)) == b"x" * 10_000
    with pytest.raises(OSError, match="input/output"):
        sink.put_stream("s/b.txt", _Chunks(4).chunks())
    with pytest.raises(FileNotFoundError):
        b"".join(sink.read(sink.url_for("s/b.txt")))


class _FullSink(FileLogSink):
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        next(iter(chunks))
        raise OSError(28, "No space left on device")


def test_a_failing_log_store_still_counts_every_attempt(tmp_path: Path) -> None:
    files = ReportFiles(_FullSink(tmp_path), "s")
    attempts = mixed(3000)
    lists = files.gather(iter(attempts), expected={"database_url": None, "api_url": None}, instant_threshold=0.5)
    assert files.error is not None and "No space left" in files.error and files.pointers() == {}
    assert lists.counts()["identity_mismatches"] == 3000  # every attempt was checked (no log at /l/...)
    report = base_report()
    assert files.write_documents(report) == files.error and not list(tmp_path.iterdir())
    assert report["pointers"] == {}  # the drain's summary line reads them


def test_report_files_round_trip_every_row(tmp_path: Path) -> None:
    sink = FileLogSink(tmp_path)
    files = ReportFiles(sink, "s/1")
    attempts = mixed(2500)
    lists = files.gather(iter(attempts), expected={"database_url": None, "api_url": None}, instant_threshold=0.5)
    summary = build_summary(session=SESSION, tally=tally_of(attempts), lists=lists, before={}, after={}, leaks=[],
                            skipped=[], wall_seconds=1.0, interrupted=False)
    assert files.write_documents(summary) is None
    document = json.loads((tmp_path / "s%2F1/session.json").read_text())
    assert len(document["attempts"]) == 2500 and document["counts"]["attempts"] == 2500
    assert document["attempts"][7]["phase_id"] == "p8" and document["pointers"]["json"].endswith("session.json")
    md = (tmp_path / "s%2F1/session.md").read_text()
    assert len(re.findall(r"^\| r\d \| p\d+ \| 1 \|", md, re.M)) == 2500  # one table row per attempt
    assert "timeline-slice" in (tmp_path / "s%2F1/session.html").read_text()
