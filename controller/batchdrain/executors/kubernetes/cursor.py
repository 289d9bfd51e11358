"""The log line cursor: strips kubelet timestamps and knows exactly how far a log got.

With ``timestamps=true`` every line the kubelet serves starts with an RFC 3339
timestamp. The cursor strips it before storing and remembers the position so that a
follow cut mid-way resumes with ``sinceTime`` without a gap or a repeated byte.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Protocol

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
# A timestamp prefix is at most this long; a longer run without a space is output.
_MAX_PREFIX = 64


class Sink(Protocol):
    """Where the cursor writes the phase's bytes (a stored log)."""

    def write(self, data: bytes) -> None: ...


def sort_key(stamp: str) -> str | None:
    """A fixed-width UTC string that sorts like the instant (RFC 3339, nanoseconds)."""
    if len(stamp) == 30 and stamp[29] == "Z" and stamp[19] == "." and stamp[10] == "T" and stamp[:4].isdigit():
        # What the kubelet sends for every line: already the key, minus the zone.
        return stamp[:29]
    match = _TS.match(stamp)
    if match is None:
        return None
    base, frac, zone = match.group(1), (match.group(2) or ""), match.group(3)
    if zone != "Z":
        moment = dt.datetime.fromisoformat(base + zone).astimezone(dt.UTC)
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac.ljust(9, '0')}"


class LineCursor:
    """Strips kubelet timestamps and remembers exactly how far the stored log got.

    Position = (key of the last line stored, complete lines stored at that key, bytes
    of an incomplete line stored at that key). A reconnect asks for ``sinceTime`` of
    that second (the API's resolution) and skips what was already stored, including
    the stored part of a line cut mid-way, so the log has neither gaps nor repeats.
    Lines are never buffered whole: a huge line streams through in chunks.
    """

    def __init__(self, out: Sink, *, skip_content: int = 0) -> None:
        self.out = out
        self.last_key: str | None = None
        self.done_at_key = 0
        self.partial = 0
        self.skip_content = skip_content  # adoption: content bytes stored by a previous controller
        self._begin()

    def _begin(self) -> None:
        self._prefix = bytearray()
        self._in_line = False
        self._drop = False
        self._skip = 0
        self._resume_key = self.last_key
        self._resume_done = self.done_at_key
        self._resume_partial = self.partial
        self._seen_at_resume = 0
        self._pending: list[bytes] = []

    def new_connection(self) -> None:
        self._begin()

    def since_time(self) -> str | None:
        return f"{self.last_key[:19]}Z" if self.last_key else None

    def feed(self, chunk: bytes) -> None:
        # One write per chunk, not per line: lines are ~100 bytes, chunks up to 64 KiB.
        self._pending = []
        try:
            self._feed(chunk)
        finally:
            if self._pending:
                self.out.write(b"".join(self._pending))
            self._pending = []

    def _feed(self, chunk: bytes) -> None:
        i, size = 0, len(chunk)
        while i < size:
            if not self._in_line:
                i = self._read_prefix(chunk, i)
                if i < 0:
                    return
            newline = chunk.find(b"\n", i)
            end = size if newline < 0 else newline + 1
            self._emit(chunk[i:end])
            i = end
            if newline >= 0:
                self._end_line()

    def _read_prefix(self, chunk: bytes, i: int) -> int:
        """Consume a line's timestamp from ``chunk[i:]``; -1 when the chunk ends first."""
        space = chunk.find(b" ", i)
        if space < 0:
            self._prefix += chunk[i:]
            if len(self._prefix) > _MAX_PREFIX:  # not a timestamp: keep it as output
                data, self._prefix = bytes(self._prefix), bytearray()
                self._start_untimed(data)
            return -1
        self._prefix += chunk[i:space]
        stamp = self._prefix.decode("ascii", "replace")
        self._prefix = bytearray()
        key = sort_key(stamp)
        if key is None:
            self._start_untimed(f"{stamp} ".encode())
        else:
            self._start_line(key)
        return space + 1

    def _start_untimed(self, data: bytes) -> None:
        self._in_line = True
        self._drop = False
        self._skip = 0
        self._emit(data)

    def _start_line(self, key: str) -> None:
        self._in_line = True
        self._drop = False
        self._skip = 0
        resume = self._resume_key
        if resume is not None and key < resume:
            self._drop = True
            return
        if resume is not None and key == resume:
            self._seen_at_resume += 1
            if self._seen_at_resume <= self._resume_done:
                self._drop = True
                return
            if self._seen_at_resume == self._resume_done + 1:
                self._skip = self._resume_partial
                self.partial = 0
        if key != self.last_key:
            self.last_key = key
            self.done_at_key = 0
            self.partial = 0

    def _emit(self, data: bytes) -> None:
        if self._drop or not data:
            return
        self.partial += len(data)
        if self._skip:
            cut = min(self._skip, len(data))
            self._skip -= cut
            data = data[cut:]
        if self.skip_content and data:
            cut = min(self.skip_content, len(data))
            self.skip_content -= cut
            data = data[cut:]
        if data:
            self._pending.append(data)

    def _end_line(self) -> None:
        if not self._drop:
            self.done_at_key += 1
            self.partial = 0
        self._in_line = False
        self._drop = False
        self._skip = 0
