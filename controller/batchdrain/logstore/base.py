"""What every log store is: the two protocols, its errors, the full-volume retry, the probe.

The protocols are the seam the executors and the drain write through; the retry is
shared by every backend that writes to a volume (a local directory, or the spool of
an object store). Errors, drawn as a tree::

    OSError
      LogStoreError            the store failed us (unwritable, unreachable, past the retries):
        LogStoreUnreadable     the controller's problem, never a phase's; the session halts
    FileNotFoundError          nothing stored under that key (readers start afresh)

A full volume is not an error of the store but a wait (``retry_while_full``), then an
``incomplete`` log.
"""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from batchdrain.domain import LogPointer

CHUNK = 64 * 1024
DEFAULT_WRITE_RETRY_SECONDS = 300.0
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# The end of the identity header (``identity.identity_header``): phase bytes follow it.
HEADER_END = b"[batchdrain] ================================\n"


def is_volume_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _FULL


def describe(err: OSError) -> str:
    code = errno.errorcode.get(err.errno or 0, str(err.errno))
    return f"{err.strerror or err} ({code})"


def retry_while_full(fn: Callable[[], None], *, retry_seconds: float,
                     on_wait: Callable[[], None] | None = None) -> None:
    """Run ``fn``; while it fails because the volume is full, retry it for ``retry_seconds``.

    The first call runs outside tenacity: log writes are the hot path and almost always succeed.
    """
    try:
        fn()
        return
    except OSError as err:
        if not is_volume_full(err):
            raise
    if on_wait is not None:
        on_wait()
    Retrying(
        retry=retry_if_exception(is_volume_full),
        stop=stop_after_delay(retry_seconds),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )(fn)




class LogStoreError(OSError):
    """The log store failed (cannot write, read or reach it): the controller's failure.

    Raised by every backend for its own failures, with one line that names the store
    and what failed. Not raised for a missing key (``FileNotFoundError``) nor for a full
    volume (waited for, then an incomplete log).
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # one line, without "[Errno N]"


class LogStoreUnreadable(LogStoreError):
    """A stored log exists but cannot be read: resuming it blind would truncate it."""


def store_error(err: OSError, what: str) -> LogStoreError:
    """``err`` as a ``LogStoreError`` saying ``what`` failed (one line)."""
    if isinstance(err, LogStoreError):
        return err
    detail = describe(err) if err.errno else (str(err) or type(err).__name__)
    named = f"{what} {detail}"
    filename = f" ({err.filename})" if err.filename and str(err.filename) not in named else ""
    return LogStoreError(err.errno or errno.EIO, f"{what}: {detail}{filename}".splitlines()[0])


PROBE_DIR = ".batchdrain-probe"


def probe_store(sink: LogSink) -> str:
    """Write, read back and delete a small object: the store works end to end, or raises.

    Run by the preflight before a session selects anything, so a store that cannot take
    a log stops the session with one line instead of every claimed phase failing.
    """
    key = f"{PROBE_DIR}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    body = f"batchdrain probe {key}\n".encode()
    try:
        url = sink.put(key, body)
        back = b"".join(sink.read(url))
        sink.delete(key)
    except FileNotFoundError as err:
        raise LogStoreError(errno.EIO, f"log store {sink.location()}: the probe written was not found "
                                       f"on reading it back ({err})") from err
    except OSError as err:
        detail = store_error(err, "probe")
        raise LogStoreError(err.errno or errno.EIO, f"log store {sink.location()}: {detail}") from err
    if back != body:
        raise LogStoreError(errno.EIO, f"log store {sink.location()}: the probe read back differs from "
                                       f"what was written ({len(back)} of {len(body)} bytes)")
    return f"{sink.location()}: wrote, read back and deleted a probe"



def stored_content(sink: LogSink, key: str) -> int | None:
    """Phase bytes a previous controller stored under ``key`` after its header.

    None when nothing (or no whole header) is stored: the log starts afresh. Any other
    failure to read raises ``LogStoreUnreadable``: opening the log afresh would
    truncate what is there.
    """
    size = 0
    header_end: int | None = None
    window = b""
    try:
        for chunk in sink.read(sink.url_for(key)):
            if header_end is None:
                window += chunk
                found = window.find(HEADER_END)
                if found >= 0:
                    header_end = size - (len(window) - len(chunk)) + found + len(HEADER_END)
                else:
                    window = window[-len(HEADER_END) :]
            size += len(chunk)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LogStoreUnreadable(err.errno, f"cannot read the stored log {key}: {err}") from err
    if header_end is None:
        return None
    return size - header_end


class LogWriter(Protocol):
    """An open log: append chunks, then close to get the pointer with size and sha256."""

    @property
    def size(self) -> int: ...

    @property
    def stalled(self) -> bool:
        """A write is waiting for space on the volume (it will end within the sink's bound)."""
        ...

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> LogPointer: ...


class LogSink(Protocol):
    def open(self, key: str, *, stream: str, resume: bool = False) -> LogWriter: ...

    def put(self, key: str, data: bytes) -> str: ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        """Store a whole file written as it is produced; readers never see half of it."""
        ...

    def url_for(self, key: str) -> str: ...

    def read(self, url: str) -> Iterator[bytes]:
        """The stored bytes, in chunks; ``FileNotFoundError`` when nothing is stored there."""
        ...

    def tail(self, url: str, size: int) -> bytes | None:
        """The last ``size`` bytes stored (a running log's too), None when nothing is stored."""
        ...

    def delete(self, key: str) -> None: ...

    def location(self) -> str: ...
