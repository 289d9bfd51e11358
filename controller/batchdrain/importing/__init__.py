"""Backlog files read as a stream of phases: JSON, JSON Lines and YAML.

``BacklogFile.phases`` yields one checked ``NewPhase`` per row, in file order, without
holding the file: the database seam inserts them in batches inside one transaction
(``Database.enqueue_stream``), so a bad row anywhere leaves nothing written. The
format follows the file name: ``.json``, ``.jsonl``/``.ndjson``, and YAML for the
rest (YAML reads JSON too: every file was read as YAML before, which is why a ``.json``
file that is not JSON from its start is still read as YAML).
Errors are ``BadBacklogFile`` lines naming the file, the line where it is known, and
the row. Values are taken exactly as written (``values``: YAML's ``007`` stays ``007``);
duplicate keys, alias bombs and rows past 16 MiB are refused (``yaml_guards``, and the
JSON decoder's hooks in ``json_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from batchdrain.db import NewPhase
from batchdrain.importing.json_rows import json_rows, jsonl_rows
from batchdrain.importing.rows import BadBacklogFile, RawRow, to_phase
from batchdrain.importing.yaml_rows import yaml_rows

__all__ = ["BacklogFile", "BacklogFormat", "BadBacklogFile", "RawRow", "format_of"]


class BacklogFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    YAML = "yaml"


_SUFFIXES = {".json": BacklogFormat.JSON, ".jsonl": BacklogFormat.JSONL, ".ndjson": BacklogFormat.JSONL}


def json_else_yaml_rows(stream: TextIO, path: Path) -> Iterator[RawRow]:
    """JSON; but a ``.json`` file the JSON reader refuses before its first row is read as
    YAML from the start, as every file was before JSON had a reader of its own (YAML
    reads JSON too, and such files were accepted). Once a row was read, the file is
    JSON: a later error is a JSON error."""
    rows = json_rows(stream, path)
    try:
        first = next(rows, None)
    except BadBacklogFile as json_error:
        stream.seek(0)
        try:
            yield from yaml_rows(stream, path)
        except BadBacklogFile:
            stream.seek(0)
            if stream.read(4096).lstrip()[:1] in ("[", "{"):
                raise json_error from json_error.__cause__  # it looks like JSON: say what JSON found
            raise
        return
    if first is not None:
        yield first
        yield from rows


_READERS: dict[BacklogFormat, Callable[[TextIO, Path], Iterator[RawRow]]] = {
    BacklogFormat.JSON: json_else_yaml_rows, BacklogFormat.JSONL: jsonl_rows, BacklogFormat.YAML: yaml_rows,
}


def format_of(path: Path) -> BacklogFormat:
    return _SUFFIXES.get(path.suffix.lower(), BacklogFormat.YAML)


class BacklogFile:
    """A backlog file to import; ``phases`` reads it from the start on every call, so a
    transaction retried by the database seam reads the same rows again."""

    def __init__(self, path: Path, fmt: BacklogFormat | None = None) -> None:
        self.path = path
        self.format = fmt or format_of(path)
        try:
            # Refuse a missing or unreadable file before the database is opened.
            with path.open(encoding="utf-8"):
                pass
        except OSError as exc:
            raise BadBacklogFile(f"cannot read {path}: {exc}") from exc

    def phases(self) -> Iterator[NewPhase]:
        rows = 0
        try:
            with self.path.open(encoding="utf-8") as stream:
                for raw in _READERS[self.format](stream, self.path):
                    rows += 1
                    yield to_phase(self.path, raw)
        except (OSError, UnicodeDecodeError) as exc:
            raise BadBacklogFile(f"cannot read {self.path}: {exc}") from exc
        if not rows:
            raise BadBacklogFile(f"{self.path}: no phases in file")
