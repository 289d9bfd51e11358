"""The end of a session: its report built from the database, checked against the logs, stored.

The report is read back from the attempt rows rather than from what the worker
threads saw, so that it says what the database will say tomorrow; each stored log's
identity header is read back too, as proof that what ran had the session's identity.

Nothing here holds the session's attempts at once (a session may have 10^5): they
stream from the database page by page, each is checked and counted into the
summary's lists (``ReportAccumulator``) and written as one line of the rows file
``session.attempts.jsonl``; the documents (``session.json``, ``.md``, ``.html``) are
then written from the summary and that file read back, each through
``LogSink.put_stream``. The session row keeps only the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchdrain.db import AttemptRecord
from batchdrain.domain import PhaseState
from batchdrain.logstore import LogSink, safe_name
from batchdrain.report import checked_row, identity_matches, json_chunks
from batchdrain.report_html import html_chunks
from batchdrain.report_lists import ReportAccumulator
from batchdrain.report_markdown import markdown_chunks
from batchdrain.selection import Plan

HEADER_PROBE_BYTES = 4096
_CHUNK = 64 * 1024
# (pointer name, file name): the rows file first, the documents are written from it.
FILES = (("attempts", "session.attempts.jsonl"), ("json", "session.json"), ("markdown", "session.md"),
         ("html", "session.html"))


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


def identity_check(sink: LogSink, attempt: AttemptRecord, *, expected: dict[str, str | None]) -> str | None:
    """What is wrong with the attempt's stored logs' identity headers (None: nothing)."""
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
    return "; ".join(problems) or None


def _batched(lines: Iterable[str]) -> Iterator[bytes]:
    """Text in chunks of about ``_CHUNK`` bytes: one write per chunk, not per line."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield "".join(batch).encode()
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode()


@dataclass
class ReportFiles:
    """A session's report files in the log store: the rows file, then the documents."""

    sink: LogSink
    session_id: str
    error: str | None = None  # why the files are not (all) stored; the database keeps the summary
    keys: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = {name: f"{safe_name(self.session_id)}/{file}" for name, file in FILES}

    def pointers(self) -> dict[str, str]:
        return {} if self.error else {name: self.sink.url_for(key) for name, key in self.keys.items()}

    def _failed(self, err: OSError) -> str:
        self.error = f"report files not stored in {self.sink.location()}: {type(err).__name__}: {err}"
        return self.error

    def gather(self, attempts: Iterable[AttemptRecord], *, expected: dict[str, str | None],
               instant_threshold: float) -> ReportAccumulator:
        """One pass over the attempts: check each, count it into the lists, write its row line.

        A log store that fails is said once (``error``) and the pass goes on without it:
        the summary the database keeps still counts every attempt.
        """
        lists = ReportAccumulator()
        finished = False

        def lines() -> Iterator[str]:
            nonlocal finished
            for attempt in attempts:
                row = checked_row(attempt, lists, instant_threshold=instant_threshold,
                                  identity_check=identity_check(self.sink, attempt, expected=expected))
                yield json.dumps(row, default=str, separators=(",", ":")) + "\n"
            finished = True

        chunks = _batched(lines())
        try:
            self.sink.put_stream(self.keys["attempts"], chunks)
        except OSError as err:
            for _ in chunks:  # the rest of the attempts, counted without their file
                pass
            if not finished:  # the error was the attempts' own, not the log store's
                raise
            self._failed(err)
        return lists

    def _row_lines(self) -> Iterator[str]:
        """The rows file read back, one JSON text per row."""
        tail = b""
        for chunk in self.sink.read(self.sink.url_for(self.keys["attempts"])):
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                yield line.decode()
        if tail:
            yield tail.decode()

    def rows(self) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in self._row_lines())

    def write_documents(self, report: dict[str, Any]) -> str | None:
        """``session.json``, ``.md`` and ``.html`` from the summary and the rows file; the error, if any."""
        report["pointers"] = self.pointers()  # none when the rows file could not be stored
        if self.error:
            return self.error
        documents: dict[str, Callable[[], Iterable[str]]] = {
            "json": lambda: json_chunks(report, self._row_lines()),
            "markdown": lambda: markdown_chunks(report, self.rows()),
            "html": lambda: html_chunks(report, self.rows),
        }
        for name, chunks in documents.items():
            try:
                self.sink.put_stream(self.keys[name], _batched(chunks()))
            except OSError as err:
                # One failure is enough: each further put would wait out the same bound.
                report["pointers"] = {}
                return self._failed(err)
        return None


@dataclass(frozen=True)
class PendingReport:
    """A session's summary, built, and its files, of which the rows file is written."""

    summary: dict[str, Any]
    files: ReportFiles
