"""What every log store is: the two protocols, the full-volume retry, the header's end.

The protocols are the seam the executors and the drain write through; the retry is
shared by every backend that writes to a volume (a local directory, or the spool of
an object store).
"""

from __future__ import annotations

import errno
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




class LogStoreUnreadable(OSError):
    """A stored log exists but cannot be read: resuming it blind would truncate it."""



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

    def read(self, url: str) -> Iterator[bytes]: ...

    def location(self) -> str: ...
