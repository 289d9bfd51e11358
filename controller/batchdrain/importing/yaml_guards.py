"""What PyYAML lets through and a backlog must not: typed scalars, duplicate keys,
alias bombs and rows too large to hold.

- ``TextConstructor``: every scalar YAML would type (null, bool, int, float,
  timestamp) is constructed as a ``values.Written``, the text as written; a mapping
  that names a key twice (PyYAML keeps the last silently) is refused with the line of
  the second one. Keys are compared as written (``on`` and ``"on"`` are one key),
  and the keys a ``<<`` merge brings in may be overridden, as YAML intends.
- ``BoundedComposer``: an alias costs nothing to compose (the node is shared), but
  every consumer that walks the value pays for each use. The size an alias stands for
  is counted once per anchored node (memoised, so the count itself stays linear) and
  summed per row; past ``ALIAS_BUDGET`` characters the row is refused before anything
  is constructed. A node that contains itself (an alias inside its own anchor) is
  refused too: no phase is an infinite value.
- ``Chunked``: the stream libyaml reads, in large chunks, counting what it hands out;
  a row that goes on for more than ``MAX_ROW_CHARS`` is refused by the read that
  would pass the bound, so a 200 MB scalar is never held whole.
"""

from __future__ import annotations

from typing import Any, TextIO

from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from batchdrain.importing.values import Written

_MERGE = "tag:yaml.org,2002:merge"
_TYPED = ("null", "bool", "int", "float", "timestamp")
# Characters aliases may add to one row (or to one value beside the rows): a phase is
# at most 1 MiB of text (``phase_limits``), so a row that expands past that is refused.
ALIAS_BUDGET = 1 << 20
# A row (its text in the file) larger than this is refused while it is read.
MAX_ROW_CHARS = 16 << 20


class RowTooLarge(ComposerError):
    """Raised from the stream itself: libyaml passes it on unchanged."""


def _written(kind: str) -> Any:
    def construct(loader: SafeConstructor, node: ScalarNode) -> Written:
        return Written(str(node.value), kind)

    return construct


class TextConstructor(SafeConstructor):
    """``SafeConstructor`` with scalars as written and duplicate keys refused."""

    checked: dict[int, Node]

    def flatten_mapping(self, node: MappingNode) -> None:
        # Checked before PyYAML's merge rewrites ``node.value`` (merged pairs first).
        if id(node) not in self.checked:
            self.checked[id(node)] = node
            refuse_duplicate_keys(node)
        super().flatten_mapping(node)


for _kind in _TYPED:
    TextConstructor.add_constructor(f"tag:yaml.org,2002:{_kind}", _written(_kind))


def duplicate_key(key: object, *, first_line: int, mark: Any) -> ConstructorError:
    return ConstructorError(None, None, f"duplicate key {str(key)!r} (first on line {first_line})", mark)


def refuse_duplicate_keys(node: MappingNode) -> None:
    seen: dict[object, int] = {}
    for key_node, _value in node.value:
        if key_node.tag == _MERGE:
            continue
        key: object = key_node.value if isinstance(key_node, ScalarNode) else id(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise duplicate_key(key, first_line=seen[key], mark=key_node.start_mark)
        seen[key] = line


class BoundedComposer(Composer):
    """``Composer`` that counts what aliases expand to (see the module)."""

    expanded: int
    sizes: dict[int, int]
    open_anchors: set[str]

    def reset_budget(self) -> None:
        self.expanded = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if not isinstance(event, AliasEvent):
            if event.anchor is None:
                return super().compose_node(parent, index)
            # Open until composed: an alias to it from inside would make it contain itself.
            self.open_anchors.add(event.anchor)
            try:
                return super().compose_node(parent, index)
            finally:
                self.open_anchors.discard(event.anchor)
        mark: Any = event.start_mark  # libyaml's marks are a class of their own
        if event.anchor in self.open_anchors:
            raise ComposerError(None, None, f"alias *{event.anchor} refers to a node that contains it", mark)
        node = super().compose_node(parent, index)
        if node is None:
            return None
        self.expanded += self._size(node)
        if self.expanded > ALIAS_BUDGET:
            raise ComposerError(None, None, f"aliases expand to more than {ALIAS_BUDGET} characters "
                                            "(an alias bomb?)", mark)
        return node

    def _size(self, root: Node) -> int:
        """Characters ``root`` stands for with every alias inside it expanded (``root`` is
        complete and cannot contain itself: ``compose_node`` refused that)."""
        sizes = self.sizes
        pending: list[tuple[Node, bool]] = [(root, False)]
        while pending:
            node, children_done = pending.pop()
            if id(node) in sizes:
                continue
            if isinstance(node, ScalarNode):
                sizes[id(node)] = len(node.value) + 1
            elif children_done:
                sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            else:
                pending.append((node, True))
                pending.extend((c, False) for c in _children(node) if id(c) not in sizes)
        return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class Chunked:
    """A stream read in large chunks (libyaml asks for a few KB at a time) that refuses a
    row read past ``max_row`` characters (``row_started`` marks where one begins)."""

    def __init__(self, stream: TextIO, chunk: int, *, max_row: int = MAX_ROW_CHARS) -> None:
        self._stream = stream
        self._chunk = chunk
        self._max_row = max_row
        self.name = getattr(stream, "name", "<file>")
        self.handed = 0
        # From the start of the file: libyaml may read a whole scalar ahead of the event
        # that opens the document (an implicit key is only ruled out after it).
        self._row_from = 0

    def row_started(self) -> None:
        self._row_from = self.handed

    def read(self, _size: int = -1) -> str:
        if self.handed - self._row_from > self._max_row:
            raise RowTooLarge(None, None, f"row is longer than {self._max_row} characters "
                                          f"({self._max_row >> 20} MiB); a phase is at most 1 MiB", None)
        text = self._stream.read(self._chunk)
        self.handed += len(text)
        return text
