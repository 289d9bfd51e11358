"""A YAML row built straight from the parser's events, with PyYAML's composer as fallback.

PyYAML composes every row into a node tree and then constructs Python values from
it; for the plain rows of a backlog (mappings, sequences, untagged scalars) that costs
about three times what libyaml takes to parse them. ``build_row`` makes the values
from the events directly and resolves each scalar exactly as ``safe_load`` does
(``Resolver.resolve``, then ``SafeConstructor``'s own constructor for its tag). A row
with anything more (an anchor, an alias, a ``<<`` merge, an explicit collection tag,
a key that is not a scalar) is handed to the composer instead: the events already
read are replayed to it, so that row is read exactly as ``safe_load`` reads it, but
for the guards both paths share (``yaml_guards``): typed scalars come back as the text
written, duplicate keys and alias bombs are refused.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import yaml
from yaml.events import (
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from batchdrain.importing.yaml_guards import BoundedComposer, Chunked, TextConstructor, duplicate_key

_STR = "tag:yaml.org,2002:str"
# Scalar tags whose safe constructor is a plain function of the node (not ``merge``).
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in
                         ("null", "bool", "int", "float", "timestamp", "binary"))


class NeedsComposer(Exception):
    """The row uses a YAML feature ``build_row`` leaves to PyYAML's composer."""


class _Replaying:
    """Events pushed back (``replay``) are read again before the parser's next ones."""

    replay: deque[Event]

    def get_event(self) -> Event:
        if self.replay:
            return self.replay.popleft()
        return super().get_event()  # type: ignore[misc, no-any-return]

    def peek_event(self) -> Event:
        if self.replay:
            return self.replay[0]
        return super().peek_event()  # type: ignore[misc, no-any-return]

    def check_event(self, *choices: Any) -> bool:
        if self.replay:
            return not choices or isinstance(self.replay[0], choices)
        return bool(super().check_event(*choices))  # type: ignore[misc]


def row_loader(source: Chunked, *, pure: bool = False) -> Any:
    """libyaml's parser (C) under PyYAML's composer, which alone can compose one node;
    PyYAML's own parser when ``pure`` (or without libyaml)."""
    if yaml.__with_libyaml__ and not pure:
        from yaml._yaml import CParser

        class CRowLoader(_Replaying, CParser, BoundedComposer, TextConstructor, Resolver):
            def __init__(self, source: Chunked) -> None:
                CParser.__init__(self, source)
                BoundedComposer.__init__(self)
                TextConstructor.__init__(self)
                Resolver.__init__(self)
                _start_row_state(self)

        return CRowLoader(source)

    class RowLoader(_Replaying, Reader, Scanner, Parser, BoundedComposer, TextConstructor, Resolver):
        def __init__(self, source: Chunked) -> None:
            Reader.__init__(self, source)
            Scanner.__init__(self)
            Parser.__init__(self)
            BoundedComposer.__init__(self)
            TextConstructor.__init__(self)
            Resolver.__init__(self)
            _start_row_state(self)

    return RowLoader(source)


def _start_row_state(loader: Any) -> None:
    """What both loaders (libyaml's and the pure one) hold besides their parser's state."""
    loader.replay = deque()
    loader.sizes = {}
    loader.open_anchors = set()
    loader.checked = {}
    loader.expanded = 0


def start_value(loader: Any) -> None:
    """A row (or a value beside the rows) begins: its alias budget and checks start afresh."""
    loader.expanded = 0
    loader.checked = {}


def build_row(loader: Any) -> tuple[int, Any]:
    """(line, value) of the next node; falls back to the composer (see the module)."""
    start_value(loader)
    seen: list[Event] = []
    try:
        first = loader.get_event()
        seen.append(first)
        return first.start_mark.line + 1, _value(loader, first, seen)
    except NeedsComposer:
        loader.replay.extend(seen)
        node = loader.compose_node(None, None)
        return node.start_mark.line + 1, loader.construct_document(node)


def _value(loader: Any, event: Event, seen: list[Event]) -> Any:
    if isinstance(event, ScalarEvent) and event.anchor is None:
        return _scalar(loader, event)
    if isinstance(event, MappingStartEvent | SequenceStartEvent) and event.anchor is None \
            and event.tag in (None, "!"):
        if isinstance(event, SequenceStartEvent):
            return _sequence(loader, seen)
        return _mapping(loader, seen)
    raise NeedsComposer  # an alias, an anchor or an explicit collection tag


def _sequence(loader: Any, seen: list[Event]) -> list[Any]:
    items: list[Any] = []
    while True:
        event = loader.get_event()
        seen.append(event)
        if isinstance(event, SequenceEndEvent):
            return items
        items.append(_value(loader, event, seen))


def _mapping(loader: Any, seen: list[Event]) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    while True:
        event = loader.get_event()
        seen.append(event)
        if isinstance(event, MappingEndEvent):
            return mapping
        if not isinstance(event, ScalarEvent):
            raise NeedsComposer  # a key that is a collection: PyYAML's rules and errors apply
        # A plain ``<<`` resolves to the merge tag, not in _SCALAR_TAGS: the composer merges.
        key = _value(loader, event, seen)
        if key in lines:
            raise duplicate_key(key, first_line=lines[key], mark=event.start_mark)
        lines[key] = _line(event)
        value_event = loader.get_event()
        seen.append(value_event)
        mapping[key] = _value(loader, value_event, seen)


def _line(event: Event) -> int:
    mark: Any = event.start_mark  # libyaml's marks are its own class
    return int(mark.line) + 1


def _scalar(loader: Any, event: ScalarEvent) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(ScalarNode, event.value, event.implicit)
    if tag == _STR:
        return event.value
    if tag not in _SCALAR_TAGS:
        raise NeedsComposer
    # libyaml's marks are its own class; PyYAML's errors only read their fields.
    marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
    node = ScalarNode(tag, event.value, *marks, style=event.style)
    return loader.yaml_constructors[tag](loader, node)
