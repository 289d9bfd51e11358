"""YAML backlog files read one row at a time.

PyYAML's ``safe_load`` builds the whole document (and its node tree) before handing
anything back. Here the parser's events are read one by one, and each item of the
phases sequence is built on its own (``yaml_events.build_row``), so memory follows the
largest row. Anchors stay known for the rest of their document (``<<: *defaults`` keeps
working). A file may hold several documents (``---``), each a list of phases or a
mapping with ``phases:``; rows are numbered across the whole file. A file that writes
a surrogate pair as escapes is read again by PyYAML's own (slower) scanner: libyaml
refuses such escapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import yaml
from yaml.nodes import ScalarNode

from batchdrain.importing.rows import BadBacklogFile, RawRow, where
from batchdrain.importing.values import is_null
from batchdrain.importing.yaml_events import build_row, next_item, row_loader, start_value
from batchdrain.importing.yaml_guards import Chunked, duplicate_key

CHUNK_CHARS = 1 << 20
NOT_A_LIST = "expected a list of phases (or a mapping with 'phases:')"


# libyaml refuses a surrogate written as an escape (``"\ud83d\ude00"``); PyYAML's own
# scanner reads both halves, joined later (``values.joined``).
_SURROGATE_ESCAPE = "invalid Unicode character escape code"


class _NeedsPureScanner(Exception):
    """libyaml met a surrogate escape: the file is read again by PyYAML's scanner."""


class _Walk:
    """One pass over the events of a file, counting rows."""

    def __init__(self, stream: TextIO, path: Path, chunk: int, *, pure: bool) -> None:
        self.source = Chunked(stream, chunk)
        self.loader = row_loader(self.source, pure=pure)
        self.path = path
        self.row = 0
        self.in_rows = False

    def documents(self) -> Iterator[RawRow]:
        loader = self.loader
        loader.get_event()  # stream start
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # document start
            yield from self._document()
            loader.get_event()  # document end
            loader.anchors = {}
            loader.sizes = {}

    def _document(self) -> Iterator[RawRow]:
        loader = self.loader
        if loader.check_event(yaml.SequenceStartEvent):
            yield from self._sequence()
        elif loader.check_event(yaml.MappingStartEvent):
            yield from self._phases_key()
        else:
            self._start_value()
            node = loader.compose_node(None, None)
            if not (isinstance(node, ScalarNode) and is_null(loader.construct_document(node))):
                raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")
            # an empty document (a trailing ---) holds no rows and is no error

    def _start_value(self) -> None:
        self.source.row_started()
        start_value(self.loader)

    def _sequence(self) -> Iterator[RawRow]:
        loader = self.loader
        loader.get_event()  # sequence start
        self.in_rows = True
        self.source.row_started()
        while type(first := next_item(loader)) is not yaml.SequenceEndEvent:
            self.row += 1
            line, data = build_row(loader, first)
            yield RawRow(self.row, line, data)
            self.source.row_started()
        self.in_rows = False

    def _phases_key(self) -> Iterator[RawRow]:
        """Stream the sequence under ``phases``; every other value is composed and dropped."""
        loader = self.loader
        loader.get_event()  # mapping start
        found = False
        lines: dict[object, int] = {}
        while not loader.check_event(yaml.MappingEndEvent):
            self._start_value()
            key = loader.compose_node(None, None)
            text: object = key.value if isinstance(key, ScalarNode) else id(key)
            if text in lines:
                raise duplicate_key(text, first_line=lines[text], mark=key.start_mark)
            lines[text] = key.start_mark.line + 1
            if text == "phases":
                if not loader.check_event(yaml.SequenceStartEvent):
                    raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")
                found = True
                yield from self._sequence()
            else:
                self._start_value()
                loader.compose_node(None, key)
        loader.get_event()  # mapping end
        if not found:
            raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")


def yaml_rows(stream: TextIO, path: Path, *, chunk: int = CHUNK_CHARS) -> Iterator[RawRow]:
    """The rows of a YAML file, in order. A file libyaml cannot read for a surrogate escape
    is read again from its start by PyYAML's scanner, the rows already handed out skipped
    (both parsers make the same rows of the same text)."""
    handed = 0
    try:
        for raw in _walk_rows(stream, path, chunk, pure=False):
            yield raw
            handed = raw.row
        return
    except _NeedsPureScanner:
        stream.seek(0)
    for raw in _walk_rows(stream, path, chunk, pure=True):
        if raw.row > handed:
            yield raw


def _walk_rows(stream: TextIO, path: Path, chunk: int, *, pure: bool) -> Iterator[RawRow]:
    walk = _Walk(stream, path, chunk, pure=pure)
    try:
        yield from walk.documents()
    except yaml.YAMLError as err:
        if not pure and _SURROGATE_ESCAPE in str(err):
            raise _NeedsPureScanner from err
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        at_row = f" row {walk.row}:" if walk.in_rows else ""
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadBacklogFile(f"{where(path, line)}:{at_row} not valid YAML: {first}") from err
    finally:
        walk.loader.dispose()
