"""JSON backlog files read one row at a time: a top-level array (or ``{"phases": [...]}``)
and JSON Lines.

The array is read through a bounded window of the file: ``json.JSONDecoder.raw_decode``
(the standard library's C scanner) decodes one element where the window starts, and
the window is refilled by chunks and trimmed behind the cursor, so memory follows the
largest row, not the file (a row past ``MAX_ROW_CHARS`` is refused, not read whole).
JSON Lines is a row per line, each read with a bound too.

The decoder keeps every number's text (``values.Written``: ``1e3`` stays ``1e3`` where
text is expected), refuses ``NaN``/``Infinity`` (Python's parser takes them, JSON has
no such numbers) and a key written twice in one object (it keeps the last silently).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from batchdrain.importing.rows import BadBacklogFile, RawRow, where
from batchdrain.importing.values import Written

CHUNK_CHARS = 1 << 20

# A row larger than this is refused rather than read into memory whole.
MAX_ROW_CHARS = 16 << 20
_BLANK = re.compile(r"[ \t\n\r]*")
# A decode error this close to the end of the window may only mean the row goes on in
# the next chunk; an unterminated string reports where the string starts instead.
_TAIL = 16
NOT_A_LIST = "expected a list of phases (or a mapping with 'phases:')"


class DuplicateKey(ValueError):
    """A mapping names a key twice (the standard parser keeps the last silently)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class RowTooLong(ValueError):
    """A value goes on past ``MAX_ROW_CHARS``: refused rather than read into memory whole."""

    def __str__(self) -> str:
        return f"longer than {MAX_ROW_CHARS} characters ({MAX_ROW_CHARS >> 20} MiB); a phase is at most 1 MiB"


class NotJsonNumber(ValueError):
    """``NaN`` or ``Infinity``: Python's parser takes them, JSON has no such numbers."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return mapping


def _constant(name: str) -> Any:
    raise NotJsonNumber(f"{name} is not a JSON number")


def decoder() -> json.JSONDecoder:
    """JSON as written: numbers keep their text (``values.Written``), NaN and duplicate keys
    are refused."""
    return json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant,
                            parse_int=lambda text: Written(text, "int"),
                            parse_float=lambda text: Written(text, "float"))


def duplicate_line(text: str, start: int, *, first_line: int, key: str) -> int:
    """The line of ``key``'s second appearance as a key in ``text[start:]``, the row's text:
    the scanner does not say where the pair was (a key written with escapes, or repeated in
    another mapping of the row first, gives the row's line or that other place)."""
    found = [m.start() for m in re.finditer(re.escape(json.dumps(key, ensure_ascii=False)) + r"[ \t\r\n]*:",
                                            text[start:])]
    if len(found) < 2:
        return first_line
    return first_line + text.count("\n", start, start + found[1])


class _Window:
    """The part of the file not consumed yet that is in memory, and the line it starts on."""

    def __init__(self, stream: TextIO, *, chunk: int = CHUNK_CHARS) -> None:
        self._stream = stream
        self._chunk = chunk
        self._decoder = decoder()
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def _fill(self) -> bool:
        """Read one more chunk behind what is left; ``False`` at the end of the file."""
        if self.eof:
            return False
        more = self._stream.read(self._chunk)
        if not more:
            self.eof = True
            return False
        self.text = self.text[self.pos:] + more
        self.pos = 0
        return True

    def _advance(self, end: int) -> None:
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def peek(self) -> str:
        """The next character that is not blank ('' at the end of the file), not consumed."""
        while True:
            match = _BLANK.match(self.text, self.pos)
            self._advance(match.end() if match else self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._fill():
                return ""

    def take(self) -> None:
        """Consume the character ``peek`` returned."""
        self.pos += 1

    def value(self) -> Any:
        """Decode the JSON value at the cursor (blanks skipped) and move past it."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as err:
                if self._maybe_truncated(err):
                    if len(self.text) - self.pos >= MAX_ROW_CHARS:
                        raise RowTooLong from err
                    if self._fill():
                        continue
                raise
            # A number that ends the window may go on in the next chunk.
            if end == len(self.text) and self._fill():
                continue
            self._advance(end)
            return value

    def _maybe_truncated(self, err: json.JSONDecodeError) -> bool:
        return err.pos >= len(self.text) - _TAIL or err.msg.startswith("Unterminated string")

    def duplicate_line(self, err: DuplicateKey) -> int:
        return duplicate_line(self.text, self.pos, first_line=self.line, key=err.key)

    def line_of(self, err: json.JSONDecodeError) -> int:
        return self.line + self.text.count("\n", self.pos, err.pos)


def json_rows(stream: TextIO, path: Path, *, chunk: int = CHUNK_CHARS) -> Iterator[RawRow]:
    """The rows of a JSON array, or of the array under a top-level object's ``phases``."""
    window = _Window(stream, chunk=chunk)
    try:
        first = window.peek()
        if first == "[":
            yield from _array(window, path)
        elif first == "{":
            yield from _phases_member(window, path)
        else:
            raise BadBacklogFile(f"{path}: {NOT_A_LIST}")
        if window.peek():
            raise BadBacklogFile(f"{where(path, window.line)}: not valid JSON: extra data after the phases")
    except json.JSONDecodeError as err:
        raise BadBacklogFile(f"{where(path, window.line_of(err))}: not valid JSON: {err.msg}") from err
    except DuplicateKey as err:
        raise BadBacklogFile(f"{where(path, window.duplicate_line(err))}: duplicate key {err.key!r}") from err
    except (NotJsonNumber, RowTooLong) as err:
        raise BadBacklogFile(f"{where(path, window.line)}: not valid JSON: {err}") from err


def _array(window: _Window, path: Path) -> Iterator[RawRow]:
    window.take()  # [
    if window.peek() == "]":
        window.take()
        return
    row = 0
    while True:
        row += 1
        window.peek()
        line = window.line
        try:
            data = window.value()
        except json.JSONDecodeError as err:
            raise BadBacklogFile(
                f"{where(path, window.line_of(err))}: row {row}: not valid JSON: {err.msg}") from err
        except DuplicateKey as err:
            raise BadBacklogFile(f"{where(path, window.duplicate_line(err))}: row {row}: "
                                 f"duplicate key {err.key!r}") from err
        except NotJsonNumber as err:
            raise BadBacklogFile(f"{where(path, line)}: row {row}: not valid JSON: {err}") from err
        except RowTooLong as err:
            raise BadBacklogFile(f"{where(path, line)}: row {row}: {err}") from err
        yield RawRow(row, line, data)
        after = window.peek()
        window.take()
        if after == "]":
            return
        if after != ",":
            raise BadBacklogFile(f"{where(path, window.line)}: row {row}: not valid JSON: "
                                 "expected ',' or ']' after the row")


def _phases_member(window: _Window, path: Path) -> Iterator[RawRow]:
    """Stream the array under ``phases``; every other member is decoded and dropped."""
    window.take()  # {
    found = False
    lines: dict[str, int] = {}
    while window.peek() != "}":
        line = window.line
        key = window.value() if window.peek() == '"' else None
        if not isinstance(key, str) or window.peek() != ":":
            raise BadBacklogFile(f"{where(path, window.line)}: not valid JSON: expected \"key\": value")
        if key in lines:
            raise BadBacklogFile(f"{where(path, line)}: duplicate key {key!r} (first on line {lines[key]})")
        lines[key] = line
        window.take()
        if key == "phases":
            if window.peek() != "[":
                raise BadBacklogFile(f"{path}: {NOT_A_LIST}")
            found = True
            yield from _array(window, path)
        else:
            window.value()
        _member_separator(window, path)
    window.take()
    if not found:
        raise BadBacklogFile(f"{path}: {NOT_A_LIST}")


def _member_separator(window: _Window, path: Path) -> None:
    after = window.peek()
    if after == ",":
        window.take()
    elif after != "}":
        raise BadBacklogFile(f"{where(path, window.line)}: not valid JSON: expected ',' or '}}'")


def jsonl_rows(stream: TextIO, path: Path) -> Iterator[RawRow]:
    """JSON Lines: one row per line; blank lines are skipped and not counted as rows."""
    row = 0
    parse = decoder().decode
    for line_no, line in enumerate(_lines(stream, path), start=1):
        if not line.strip():
            continue
        row += 1
        try:
            data = parse(line)
        except json.JSONDecodeError as err:
            raise BadBacklogFile(f"{path}:{line_no}: row {row}: not valid JSON: {err.msg}") from err
        except DuplicateKey as err:
            raise BadBacklogFile(f"{path}:{line_no}: row {row}: duplicate key {err.key!r}") from err
        except NotJsonNumber as err:
            raise BadBacklogFile(f"{path}:{line_no}: row {row}: not valid JSON: {err}") from err
        yield RawRow(row, line_no, data)


def _lines(stream: TextIO, path: Path) -> Iterator[str]:
    """The file's lines, none read past ``MAX_ROW_CHARS`` (a 200 MB line is refused, not held)."""
    line_no = 0
    while line := stream.readline(MAX_ROW_CHARS + 1):
        line_no += 1
        if len(line) > MAX_ROW_CHARS:
            raise BadBacklogFile(f"{path}:{line_no}: row is longer than {MAX_ROW_CHARS} characters "
                                 f"({MAX_ROW_CHARS >> 20} MiB); a phase is at most 1 MiB")
        yield line
