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
from collections.abc import Callable
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


# Texts whose resolved tag is kept: the field names and the values rows share, not
# every phase id (memory stays flat whatever the file's size).
TAGS_KEPT = 4096
_GetEvent = Callable[[], Event]


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
                _start_row_state(self, CParser.get_event)

        return CRowLoader(source)

    class RowLoader(_Replaying, Reader, Scanner, Parser, BoundedComposer, TextConstructor, Resolver):
        def __init__(self, source: Chunked) -> None:
            Reader.__init__(self, source)
            Scanner.__init__(self)
            Parser.__init__(self)
            BoundedComposer.__init__(self)
            TextConstructor.__init__(self)
            Resolver.__init__(self)
            _start_row_state(self, Parser.get_event)

    return RowLoader(source)


def _start_row_state(loader: Any, parser_get_event: Any) -> None:
    """What both loaders (libyaml's and the pure one) hold besides their parser's state.
    ``next_event`` is the parser's own ``get_event``, bypassing the replay (a Python
    call per event that ``build_row`` needs only after a fallback); ``tags`` keeps what
    scalars resolved to (the same keys and values recur on every row)."""
    loader.next_event = parser_get_event.__get__(loader)
    loader.tags = {}
    loader.replay = deque()
    loader.sizes = {}
    loader.open_anchors = set()
    loader.checked = {}
    loader.expanded = 0


def start_value(loader: Any) -> None:
    """A row (or a value beside the rows) begins: its alias budget and checks start afresh."""
    loader.expanded = 0
    loader.checked = {}


def _reader(loader: Any) -> _GetEvent:
    """The parser's own ``get_event`` (a Python call per event less), or the replaying one
    while a fallback's events are still to be read again by its composer."""
    return loader.get_event if loader.replay else loader.next_event  # type: ignore[no-any-return]


def next_item(loader: Any) -> Event:
    """The next event (a row's first event read here rather than peeked with
    ``check_event`` saves a Python call per row)."""
    return _reader(loader)()


def build_row(loader: Any, first: Event) -> tuple[int, Any]:
    """(line, value) of the node ``first`` opens (read by ``next_item``); falls back to
    the composer (see the module)."""
    start_value(loader)
    seen: list[Event] = [first]
    get = _reader(loader)
    try:
        return _line(first), _value(loader, get, first, seen)
    except NeedsComposer:
        loader.replay.extend(seen)
        node = loader.compose_node(None, None)
        return node.start_mark.line + 1, loader.construct_document(node)


def _value(loader: Any, get: _GetEvent, event: Event, seen: list[Event]) -> Any:
    kind = type(event)
    if event.anchor is not None:  # type: ignore[attr-defined]
        raise NeedsComposer  # an anchor, or an alias (its anchor field names the target)
    if kind is ScalarEvent:
        return _scalar(loader, event)  # type: ignore[arg-type]
    if event.tag not in (None, "!"):  # type: ignore[attr-defined]
        raise NeedsComposer  # an explicit collection tag
    if kind is MappingStartEvent:
        return _mapping(loader, get, seen)
    if kind is SequenceStartEvent:
        return _sequence(loader, get, seen)
    raise NeedsComposer


def _sequence(loader: Any, get: _GetEvent, seen: list[Event]) -> list[Any]:
    items: list[Any] = []
    while True:
        event = get()
        seen.append(event)
        if type(event) is SequenceEndEvent:
            return items
        items.append(_value(loader, get, event, seen))


def _mapping(loader: Any, get: _GetEvent, seen: list[Event]) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    # Each key's event: its line is read only to name a duplicate (a mark read per key
    # is a Python call per key of every row).
    key_events: dict[Any, Event] = {}
    while True:
        event = get()
        seen.append(event)
        if type(event) is MappingEndEvent:
            return mapping
        if not isinstance(event, ScalarEvent):
            raise NeedsComposer  # a key that is a collection: PyYAML's rules and errors apply
        if event.anchor is not None:
            raise NeedsComposer  # an anchored key (``_value`` inlined: this runs for every key)
        # A plain ``<<`` resolves to the merge tag, not in _SCALAR_TAGS: the composer merges.
        key = _scalar(loader, event)
        if key in key_events:
            raise duplicate_key(key, first_line=_line(key_events[key]), mark=event.start_mark)
        key_events[key] = event
        value_event = get()
        seen.append(value_event)
        mapping[key] = _value(loader, get, value_event, seen)


def _line(event: Event) -> int:
    mark: Any = event.start_mark  # libyaml's marks are its own class
    return int(mark.line) + 1


def _scalar(loader: Any, event: ScalarEvent) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        # The tag ``safe_load`` gives an untagged scalar, kept by text and style.
        tag = loader.tags.get((event.value, event.implicit)) or _resolved(loader, event)
    if tag == _STR:
        return event.value
    if tag not in _SCALAR_TAGS:
        raise NeedsComposer
    # libyaml's marks are its own class; PyYAML's errors only read their fields.
    marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
    node = ScalarNode(tag, event.value, *marks, style=event.style)
    return loader.yaml_constructors[tag](loader, node)


def _resolved(loader: Any, event: ScalarEvent) -> str:
    """What the resolver says, kept for up to TAGS_KEPT texts: without path resolvers it
    is a function of the text and its style alone."""
    tag: str = loader.resolve(ScalarNode, event.value, event.implicit)
    if len(loader.tags) < TAGS_KEPT and not loader.yaml_path_resolvers:
        loader.tags[(event.value, event.implicit)] = tag
    return tag
