"""YAML backlog files read one row at a time.

PyYAML's ``safe_load`` builds the whole document (and its node tree) before handing
anything back. Here the parser's events are read one by one, and each item of the
phases sequence is built on its own (``yaml_events.build_row``), so memory follows the
largest row. Anchors stay known for the rest of their document (``<<: *defaults`` keeps
working). A file may hold several documents (``---``), each a list of phases or a
mapping with ``phases:``; rows are numbered across the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import yaml
from yaml.nodes import ScalarNode

from batchdrain.importing.rows import BadBacklogFile, RawRow, where
from batchdrain.importing.yaml_events import build_row, row_loader

CHUNK_CHARS = 1 << 20
NOT_A_LIST = "expected a list of phases (or a mapping with 'phases:')"


class _Walk:
    """One pass over the events of a file, counting rows."""

    def __init__(self, stream: TextIO, path: Path, chunk: int) -> None:
        self.loader = row_loader(stream, chunk)
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

    def _document(self) -> Iterator[RawRow]:
        loader = self.loader
        if loader.check_event(yaml.SequenceStartEvent):
            yield from self._sequence()
        elif loader.check_event(yaml.MappingStartEvent):
            yield from self._phases_key()
        else:
            node = loader.compose_node(None, None)
            if not (isinstance(node, ScalarNode) and loader.construct_document(node) is None):
                raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")
            # an empty document (a trailing ---) holds no rows and is no error

    def _sequence(self) -> Iterator[RawRow]:
        loader = self.loader
        loader.get_event()  # sequence start
        self.in_rows = True
        while not loader.check_event(yaml.SequenceEndEvent):
            self.row += 1
            line, data = build_row(loader)
            yield RawRow(self.row, line, data)
        self.in_rows = False
        loader.get_event()  # sequence end

    def _phases_key(self) -> Iterator[RawRow]:
        """Stream the sequence under ``phases``; every other value is composed and dropped."""
        loader = self.loader
        loader.get_event()  # mapping start
        found = False
        while not loader.check_event(yaml.MappingEndEvent):
            key = loader.compose_node(None, None)
            if not found and isinstance(key, ScalarNode) and key.value == "phases":
                if not loader.check_event(yaml.SequenceStartEvent):
                    raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")
                found = True
                yield from self._sequence()
            else:
                loader.compose_node(None, key)
        loader.get_event()  # mapping end
        if not found:
            raise BadBacklogFile(f"{self.path}: {NOT_A_LIST}")


def yaml_rows(stream: TextIO, path: Path, *, chunk: int = CHUNK_CHARS) -> Iterator[RawRow]:
    """The rows of a YAML file, in order."""
    walk = _Walk(stream, path, chunk)
    try:
        yield from walk.documents()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        at_row = f" row {walk.row}:" if walk.in_rows else ""
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadBacklogFile(f"{where(path, line)}:{at_row} not valid YAML: {first}") from err
    finally:
        walk.loader.dispose()
