"""One row of a backlog file: where it was read, and its check into a ``NewPhase``.

The readers (``json_rows``, ``yaml_rows``) yield ``RawRow`` values in file order;
``to_phase`` is the one place that decides whether a row is a phase, so every format
refuses the same rows with the same words; its values are taken as written
(``values.clean_row``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchdrain.db import NewPhase
from batchdrain.domain import BadInput, PhaseSpec
from batchdrain.importing.schedule import schedule_fields
from batchdrain.importing.values import clean_row, describe

REQUIRED = ("run_id", "phase_id", "command")


class BadBacklogFile(BadInput):
    """A backlog file refused while reading it; the message already names the file."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """A row as parsed, before it is checked: its number (1-based, over the whole file)
    and the line it starts on (``None`` where the reader cannot tell cheaply)."""

    row: int
    line: int | None
    data: Any


def where(path: Path, line: int | None) -> str:
    """``file:line`` when the line is known, else the file: the prefix of every error."""
    return f"{path}:{line}" if line is not None else str(path)


def to_phase(path: Path, raw: RawRow) -> NewPhase:
    """The row as a phase, or ``BadBacklogFile`` naming the file, line and row."""
    data = raw.data
    if not isinstance(data, dict):
        raise BadBacklogFile(
            f"{where(path, raw.line)}: row {raw.row}: expected a mapping, got {describe(data)}")
    try:
        data = clean_row(data)
        missing = [k for k in REQUIRED if data.get(k) in (None, "")]
        if missing:
            raise BadInput(f"missing {', '.join(missing)}")
        spec = PhaseSpec.from_json(data)
        schedule = schedule_fields(data)
    except BadInput as exc:
        raise BadBacklogFile(f"{where(path, raw.line)}: row {raw.row}: {exc}") from exc
    return NewPhase(data["run_id"], data["phase_id"], spec, **schedule)
