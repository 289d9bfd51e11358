"""Values of a backlog row taken exactly as written.

YAML 1.1 types plain scalars by their look: ``007`` is the integer 7, ``1:30`` is 5400
(sexagesimal), ``0x1F`` is 31, ``yes``/``no``/``on``/``off`` are booleans, ``~`` and
``null`` are null, ``2024-01-01`` is a date; and JSON's parser turns ``1e3`` into
``1000.0``. Turned back into text, an id, an argument or an env value would silently
change. So the readers never hand such a scalar over as its typed value: they hand a
``Written``, which *is* the text as written (a ``str``) and says which type the parser
would have made (``kind``). ``clean_row`` then makes every field what it should be:

- where text is expected (ids, command, env, node_selector, image, cpu, memory, pull
  policy) the text as written, quoted or not: ``007`` stays ``007``, ``~`` stays ``~``;
- where a number is expected (``timeout_seconds``/``timeout``) the text read as a
  plain decimal number (``30``, ``1.5``, ``1e3``, quoted or not); YAML's other forms
  (``0x1F``, ``1:30``, ``010``, ``.inf``) are refused rather than guessed;
- a top-level field that is null (``image: ~``, ``"image": null``) is absent, as before.

Values that are not text where text is expected (JSON's ``true``, ``null`` or a list
as an env value) are refused with the field's name rather than turned into ``"True"``.
Escaped surrogate pairs (``"\\ud83d\\ude00"``, which YAML's reader leaves as two
halves) are joined into their character; a lone half is left for ``phase_limits`` to
refuse with the row number.
"""

from __future__ import annotations

import re
from typing import Any

from batchdrain.domain import BadInput

NUMBER_FIELDS = frozenset({"timeout_seconds", "timeout"})
MAPPING_FIELDS = frozenset({"env", "node_selector"})
TEXT_FIELDS = frozenset({"run_id", "phase_id", "image", "cpu", "memory", "image_pull_policy", "queue",
                         "priority_class", "workload_priority_class"})
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Written(str):
    """A scalar as written in the file, which its parser would have typed (``kind``:
    ``null``, ``bool``, ``int``, ``float``, ``timestamp``)."""

    kind: str

    def __new__(cls, text: str, kind: str) -> Written:
        self = super().__new__(cls, text)
        self.kind = kind
        return self


def is_null(value: object) -> bool:
    return value is None or (isinstance(value, Written) and value.kind == "null")


def joined(text: str) -> str:
    """``text`` with every valid surrogate pair joined into its character."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def describe(value: object) -> str:
    """The type of a parsed value in the words of the file (a ``Written`` by its kind)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Written):
        return value.kind
    return type(value).__name__


def _text(label: str, value: object) -> str:
    if isinstance(value, str):
        return joined(str(value))  # str() of a Written is the plain text
    raise BadInput(f"{label} must be text, got {describe(value)} (quote it)")


def _number(label: str, value: object) -> object:
    """The number the text writes, or the value itself for the spec's own check. Text
    that is not typed is read too (YAML leaves ``1e3`` a string; quoting cannot change
    a number's text)."""
    if not isinstance(value, str):
        return value  # a bool, a list: the spec's check names it
    if not _DECIMAL.fullmatch(value):
        raise BadInput(f"{label} {str(value)!r} is not a plain decimal number of seconds")
    return float(value) if any(c in value for c in ".eE") else int(value)


def _mapping(label: str, value: object) -> object:
    if not isinstance(value, dict):
        return value  # the spec's check says it must be a mapping
    out: dict[str, str] = {}
    for key, item in value.items():
        name = _text(f"{label} name", key)
        out[name] = _text(f"{label} {name[:64]}", item)
    return out


def _command(value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        return value  # the spec's check says it must be a list of strings
    if all(type(a) is str and a.isascii() for a in value):
        return value  # plain ASCII text already: nothing to join or unwrap
    return [_text(f"command argument {i}", a) for i, a in enumerate(value, start=1)]


def _field(key: str, value: object) -> object:
    if key in NUMBER_FIELDS:
        return _number(key, value)
    if key in MAPPING_FIELDS:
        return _mapping(key, value)
    if key == "command":
        return _command(value)
    if key in TEXT_FIELDS:
        return _text(key, value)
    return value  # an unknown field: the spec's check names it


def clean_row(data: dict[Any, Any]) -> dict[str, Any]:
    """The row's fields as ``PhaseSpec.from_json`` reads them (see the module)."""
    row: dict[str, Any] = {}
    for key, value in data.items():
        # Most fields are plain ASCII text (a parsed ``str``, not a ``Written``): taken
        # as they are without the checks below, which would return them unchanged.
        name = key if type(key) is str and key.isascii() else _text("field name", key)
        if type(value) is str and name in TEXT_FIELDS and value.isascii():
            row[name] = value
        elif not is_null(value):
            row[name] = _field(name, value)
    return row
