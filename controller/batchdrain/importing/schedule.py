"""The scheduling fields of a backlog row: ``priority``, ``run_weight`` and ``needs``.

They say when a phase runs, not what it runs, so they are columns of their own rather
than part of the spec. Integers are taken from JSON numbers and YAML integers, and from
text that writes a plain decimal integer (``"5"``), never from booleans or fractions.
"""

from __future__ import annotations

import re
from typing import Any

from batchdrain.domain import BadInput

# The columns are 32-bit integers.
PRIORITY_RANGE = (-(2**31) + 1, 2**31 - 1)
WEIGHT_RANGE = (1, 10_000)
_INTEGER = re.compile(r"[-+]?[0-9]+")
MAX_ID = 255


def _integer(label: str, value: object, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadInput(f"{label} must be a whole number, got {value!r}")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise BadInput(f"{label} must be a whole number, got {str(value)!r}")
        value = int(value)
    low, high = bounds
    if not low <= value <= high:
        raise BadInput(f"{label} must be between {low} and {high}, got {value}")
    return value


def schedule_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``NewPhase`` keyword arguments for the scheduling fields the row gives."""
    fields: dict[str, Any] = {}
    if data.get("priority") is not None:
        fields["priority"] = _integer("priority", data["priority"], PRIORITY_RANGE)
    if data.get("run_weight") is not None:
        fields["run_weight"] = _integer("run_weight", data["run_weight"], WEIGHT_RANGE)
    if data.get("needs") is not None:
        fields["needs"] = needs_of(data["needs"])
    return fields


def needs_of(value: object) -> tuple[str, ...]:
    """The phase ids a row needs: a list of non-blank ids of at most 255 characters, kept once each."""
    if isinstance(value, str) or not isinstance(value, list):
        raise BadInput(f"needs must be a list of phase ids, got {value!r}")
    needs: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_ID:
            raise BadInput(f"needs must hold phase ids (text, 1 to {MAX_ID} characters), got {item!r}")
        needs[str(item)] = None
    return tuple(needs)
