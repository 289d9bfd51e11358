"""Log cursors: what a log pump stores of each response, and where a reconnect resumes.

Which cursor fits follows from how the kubelet frames what it serves
(``ReadLogs`` and ``logWriter.write`` in ``k8s.io/cri-client/pkg/logs``, Kubernetes
1.33). The log file holds CRI records ``<time> <stdout|stderr> <P|F> <content>``: F
ends a line, P is part of one (a line longer than the runtime's record size, 16 KiB for
containerd, or an unterminated tail). With ``timestamps=true`` a served record gets a
timestamp when the record before it *in the file* ended a line (F), whichever stream
that record belongs to and whether or not it was sent (``stream=`` or ``sinceTime``
filtered it out); the first record of the file always gets one.

* Combined log (both streams): every record is served, so a timestamp follows every
  newline and nothing else. ``LineCursor`` strips them and resumes with ``sinceTime``.
  The one exception is the first record after ``sinceTime``: the continuation of a line
  begun before that second comes untimed, and was stored already.
* One stream (``stream=Stdout|Stderr``): the other stream's records decide the
  framing, so a timestamp appears inside a long line (a P record after the other
  stream's F) and lines come untimed (after the other stream's P), and how long a P
  record is depends on the runtime. Timestamps cannot be told from content there, so
  ``ByteCursor`` asks for none: the kubelet then writes each record's content and
  nothing else, the stream's bytes exactly as the runtime recorded them (containerd
  turns "\\r\\n" into "\\n"), and a reconnect reads the log again from the start,
  checks that the bytes already stored come back the same, and skips them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Protocol

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
# A timestamp prefix is at most this long; a longer run without a space is output.
_MAX_PREFIX = 64
# How much of a re-sent log that is not the stored one a problem's message quotes.
_HEAD = 80


class Sink(Protocol):
    """Where the cursor writes the phase's bytes (a stored log)."""

    def write(self, data: bytes) -> None: ...


class LogCursor(Protocol):
    """What a log pump asks of a cursor, whichever framing it reads."""

    @property
    def timestamps(self) -> bool:
        """Whether to ask the kubelet for timestamps."""

    @property
    def stored(self) -> int:
        """Content bytes stored through this cursor so far: a pump's measure of progress."""

    @property
    def problem(self) -> str | None:
        """Why nothing more can be stored exactly (then the pump stops), else None."""

    def since_time(self) -> str | None: ...

    def new_connection(self) -> None: ...

    def feed(self, chunk: bytes) -> None: ...

    def end_connection(self, *, complete: bool) -> None:
        """The response ended; ``complete``: it was a whole (non-follow) read, not cut."""


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
    """Strips kubelet timestamps of a combined log and remembers how far it got.

    Position = (key of the last line stored, complete lines stored at that key, bytes
    of an incomplete line stored at that key). A reconnect asks for ``sinceTime`` of
    that second (the API's resolution) and skips what was already stored, including
    the stored part of a line cut mid-way, so the log has neither gaps nor repeats.
    Lines are never buffered whole: a huge line streams through in chunks.

    Only for the combined log: there a timestamp opens every served line (see the
    module docstring). What a resumed response starts with before its first timestamp
    is the rest of a line begun before ``sinceTime``, stored already, and is dropped.
    Content that starts such a continuation with a valid timestamp of that second or
    later would be taken for a line start: the one framing a combined log cannot tell.
    """

    timestamps = True
    problem: str | None = None

    def __init__(self, out: Sink, *, skip_content: int = 0) -> None:
        self.out = out
        self.last_key: str | None = None
        self.done_at_key = 0
        self.partial = 0
        self.stored = 0
        self.skip_content = skip_content  # adoption: content bytes stored by a previous controller
        self._begin()

    def _begin(self) -> None:
        self._prefix = bytearray()
        self._in_line = False
        self._drop = False
        self._skip = 0
        self._first = True  # no record of this response started yet
        self._resume_key = self.last_key
        self._resume_done = self.done_at_key
        self._resume_partial = self.partial
        self._seen_at_resume = 0
        self._pending: list[bytes] = []

    def new_connection(self) -> None:
        self._begin()

    def end_connection(self, *, complete: bool) -> None:
        """Nothing to settle: bytes of an undecided prefix come again on the next read."""

    def since_time(self) -> str | None:
        return f"{self.last_key[:19]}Z" if self.last_key else None

    def feed(self, chunk: bytes) -> None:
        # One write per chunk, not per line: lines are ~100 bytes, chunks up to 64 KiB.
        self._pending = []
        try:
            self._feed(chunk)
        finally:
            if self._pending:
                data = b"".join(self._pending)
                self.stored += len(data)
                self.out.write(data)
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
        newline = chunk.find(b"\n", i, len(chunk) if space < 0 else space)
        if newline >= 0:  # a line without a timestamp: none holds a newline
            data, self._prefix = bytes(self._prefix + chunk[i:newline]), bytearray()
            self._start_untimed(data)
            return newline
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
        resumed_head = self._first and self._resume_key is not None
        self._first = False
        self._in_line = True
        self._drop = resumed_head  # the rest of a line begun before sinceTime: stored
        self._skip = 0
        self._emit(data)

    def _start_line(self, key: str) -> None:
        self._first = False
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


class ByteCursor:
    """Stores one stream served without timestamps as it comes; resumes by re-reading.

    Without ``timestamps`` the kubelet serves each record's content and nothing else,
    so what arrives is the stream's bytes exactly, whatever the other stream did. There
    is no position to ask for, so every read after the first asks for the whole log
    again and skips the bytes already stored, after checking that they came back the
    same (sha256 of the re-sent head against that of the stored bytes). When they do
    not, or the log is now shorter than what was stored, nothing more is stored and
    ``problem`` says so: a gap is reported, never filled with bytes from the wrong
    place. That happens when the kubelet rotated the file, and when it can no longer
    read it (the pod is going): for ``stream=Stdout`` it has sent 200 before it asks the
    runtime, so its error comes as the body ("unable to retrieve container logs...").

    ``stored_digest`` is the sha256 of the ``skip_content`` bytes a previous controller
    stored (adoption); without it no skip can be checked. Each read re-sends the whole
    log: a drop costs one more pass over it, and so does the final read after a follow
    (which cannot be skipped: containerd writes a stream's last record after the
    container is reported exited, so a follow's end does not prove it had everything).
    """

    timestamps = False

    def __init__(self, out: Sink, *, skip_content: int = 0, stored_digest: hashlib._Hash | None = None) -> None:
        self.out = out
        self.stored = 0
        self.problem: str | None = None
        self._skip_content = skip_content
        # sha256 of every content byte before our position, while it is known.
        self._digest = (stored_digest.copy() if stored_digest else None) if skip_content else hashlib.sha256()
        self._begin()

    def _begin(self) -> None:
        self._seen = 0  # bytes of this response so far
        self._check = hashlib.sha256()  # of the re-sent bytes already stored
        self._checked = False  # the re-sent bytes were compared with the stored ones
        self._head = b""  # how the re-sent bytes begin, for the problem's message

    def new_connection(self) -> None:
        self._begin()

    def since_time(self) -> str | None:
        return None  # the position is a byte count: read from the start

    @property
    def position(self) -> int:
        """Content bytes of the served log before the next byte to store."""
        return self._skip_content + self.stored

    def feed(self, chunk: bytes) -> None:
        if self.problem is not None or not chunk:
            return
        if len(self._head) < _HEAD:
            self._head += chunk[:_HEAD - len(self._head)]
        behind = self.position - self._seen
        if behind > 0:
            head = chunk[:behind]
            self._seen += len(head)
            self._check.update(head)
            chunk = chunk[behind:]
            if self._seen < self.position:
                return
        if not self._checked:
            self._checked = True
            self._verify()
            if self.problem is not None:
                return
        if chunk:
            self._seen += len(chunk)
            self.stored += len(chunk)
            if self._digest is not None:
                self._digest.update(chunk)
            self.out.write(chunk)

    def _verify(self) -> None:
        if self.position and self._digest is not None and self._check.digest() != self._digest.digest():
            self.problem = (f"the log served no longer begins with the {self.position} bytes stored but with "
                            f"{self._head!r} (rotated, or an error in its place); nothing more was stored")

    def end_connection(self, *, complete: bool) -> None:
        if complete and self.problem is None and self._seen < self.position:
            self.problem = (f"the log served ended after {self._seen} of the {self.position} bytes "
                            "already stored (rotated?); nothing more was stored")
