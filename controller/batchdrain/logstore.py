"""Durable log storage: the ``LogSink`` seam.

Logs are written as they arrive, chunk by chunk, so whatever a phase printed before a
crash, an eviction or a pod deletion is already on disk. Bytes are stored exactly as
received (no decoding), and size and sha256 are computed while streaming so that
huge logs never sit in memory.

Backends: a local directory (the default, a PVC in-cluster) and any fsspec URL
(``s3://...``, ``memory://...``), which spools to a local file and uploads on close.

A full volume (ENOSPC, EDQUOT) is usually temporary (a cleanup job, a resized PVC), so
a write that hits it is retried for ``write_retry_seconds``; meanwhile the writer's
caller blocks, and so does whatever feeds it (a phase's pipe, a pod log stream), which
loses nothing. Past the bound the log is closed off at the last whole chunk, further
chunks are counted but dropped, and the pointer says so (``incomplete``): the size and
sha256 recorded always describe exactly the bytes on disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from batchdrain.domain import LogPointer

CHUNK = 64 * 1024
_MAX_NAME_PART = 80
DEFAULT_WRITE_RETRY_SECONDS = 300.0
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_volume_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _FULL


def _describe(err: OSError) -> str:
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


# Names up to this long are kept readable; longer ones keep a prefix and a full hash.
_MAX_PLAIN_NAME = 96
_HASHED_PREFIX = 31
# Never produced by the percent-encoding below, so a hashed name can equal no plain one.
_HASH_MARK = "+"
# Log keys put runs under this folder, so no run id can meet a session's report files.
_RUNS_DIR = "runs"
# The end of the identity header (``identity.identity_header``): phase bytes follow it.
HEADER_END = b"[batchdrain] ================================\n"


class LogStoreUnreadable(OSError):
    """A stored log exists but cannot be read: resuming it blind would truncate it."""


def safe_name(value: str) -> str:
    """A file-name-safe rendering of a free-text id, injective for any ids.

    Percent-encoding (everything but ``A-Z a-z 0-9 - _ . ~``, a leading dot too) is
    reversible, so distinct ids give distinct names; past ``_MAX_PLAIN_NAME`` characters
    the name is a prefix, ``+`` (which the encoding never leaves bare) and the full
    sha256 of the id, short enough for any file system or object store.
    """
    quoted = quote(value, safe="-_.~")
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) <= _MAX_PLAIN_NAME:
        return quoted
    prefix = quoted[:_HASHED_PREFIX]
    cut = prefix.rfind("%", len(prefix) - 2)
    if cut >= 0:  # never end the prefix inside an escape
        prefix = prefix[:cut]
    return f"{prefix}{_HASH_MARK}{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


def log_key(session_id: str, run_id: str, phase_id: str, attempt: int, stream: str) -> str:
    """``<session>/runs/<run>/<phase>.attempt-<n>[.<stream>].log``: one key per attempt log.

    Injective: each id is a ``safe_name`` (no ``/``) in a path part of its own, and the
    suffix is read from the right, so no two (run, phase, attempt, stream) share a key.
    """
    suffix = "log" if stream == "combined" else f"{stream}.log"
    return f"{safe_name(session_id)}/{_RUNS_DIR}/{safe_name(run_id)}/{safe_name(phase_id)}.attempt-{attempt}.{suffix}"


def _legacy_safe_name(value: str) -> str:
    quoted = quote(value, safe="-_.~ ").replace(" ", "_")
    quoted = re.sub(r"^\.+", "_", quoted)
    if quoted == value and len(value) <= 80:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{quoted[:80]}-{digest}"


def legacy_log_key(session_id: str, run_id: str, phase_id: str, attempt: int, stream: str) -> str:
    """The key earlier versions used (``<run>__<phase>``, not injective): still read on adoption."""
    suffix = "log" if stream == "combined" else f"{stream}.log"
    return (f"{_legacy_safe_name(session_id)}/{_legacy_safe_name(run_id)}__{_legacy_safe_name(phase_id)}"
            f".attempt-{attempt}.{suffix}")


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


class _FileWriter:
    def __init__(self, path: Path, *, stream: str, url: str, resume: bool,
                 retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._hash = hashlib.sha256()
        self._size = 0
        if resume and path.exists():
            # Resuming: the hash must cover what an earlier writer already stored.
            with path.open("rb") as existing:
                for block in iter(lambda: existing.read(CHUNK), b""):
                    self._hash.update(block)
                    self._size += len(block)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._stream = stream
        self._url = url
        self._closed: LogPointer | None = None
        self._retry_seconds = retry_seconds
        # Serialises a stalled write with close(): a reader thread may still be inside
        # write() when the attempt ends, and must not write to a closed (reused) fd.
        self._lock = threading.Lock()
        self._stall_started: float | None = None
        self._stalled_seconds = 0.0
        self._gave_up: str | None = None
        self._dropped = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def stalled(self) -> bool:
        return self._stall_started is not None

    def _stall(self) -> None:
        self._stall_started = time.monotonic()

    def _unstall(self) -> None:
        if self._stall_started is not None:
            self._stalled_seconds += time.monotonic() - self._stall_started
            self._stall_started = None

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self._lock:
            if self._closed is not None:
                raise OSError(errno.EBADF, f"log {self._url} already closed")
            if self._gave_up is not None:
                self._dropped += len(chunk)
                return
            view = memoryview(chunk)

            def put() -> None:
                nonlocal view
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]

            try:
                retry_while_full(put, retry_seconds=self._retry_seconds, on_wait=self._stall)
            except OSError as err:
                if not is_volume_full(err):
                    raise
                # Cut the part of this chunk that did fit: the file stays exactly the
                # chunks that size and sha256 describe, and nothing after a gap is kept.
                os.ftruncate(self._fd, self._size)
                self._gave_up = f"{_describe(err)} for {self._retry_seconds:g}s"
                self._dropped += len(chunk)
                return
            finally:
                self._unstall()
            self._hash.update(chunk)
            self._size += len(chunk)

    def _incomplete(self) -> str | None:
        if self._gave_up is None:
            return None
        return (f"log incomplete: {self._gave_up}; {self._size} bytes stored, "
                f"{self._dropped} bytes dropped")

    def close(self) -> LogPointer:
        with self._lock:
            if self._closed is None:
                try:
                    retry_while_full(lambda: os.fsync(self._fd), retry_seconds=self._retry_seconds,
                                     on_wait=self._stall)
                except OSError as err:
                    if not is_volume_full(err):
                        raise
                    self._gave_up = self._gave_up or f"{_describe(err)} at fsync"
                finally:
                    self._unstall()
                    os.close(self._fd)
                self._closed = LogPointer(
                    stream=self._stream, url=self._url, size_bytes=self._size, sha256=self._hash.hexdigest(),
                    incomplete=self._incomplete(), stalled_seconds=round(self._stalled_seconds, 3),
                )
            return self._closed


class FileLogSink:
    """Logs under a local directory; pointers are absolute paths."""

    def __init__(self, root: str | Path, *, write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS) -> None:
        self.root = Path(root).expanduser().resolve()
        self.write_retry_seconds = write_retry_seconds

    def location(self) -> str:
        return str(self.root)

    def url_for(self, key: str) -> str:
        return str(self.root / key)

    def open(self, key: str, *, stream: str, resume: bool = False) -> _FileWriter:
        path = self.root / key
        return _FileWriter(path, stream=stream, url=str(path), resume=resume,
                           retry_seconds=self.write_retry_seconds)

    def put(self, key: str, data: bytes) -> str:
        """Store a whole file; a full volume is waited for, then the OSError is raised."""
        return self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        """``put`` for a file too large to hold: each chunk is written (and waited for on a
        full volume) as it comes, into a temporary file renamed into place at the end, so
        readers see the old or the new file, never half of one, and a failure leaves none."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            _write_chunks(tmp, chunks, retry_seconds=self.write_retry_seconds)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return str(path)

    def read(self, url: str) -> Iterator[bytes]:
        with open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")


def _write_chunks(path: Path, chunks: Iterable[bytes], *, retry_seconds: float) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            view = memoryview(chunk)

            def put() -> None:
                nonlocal view
                while view:
                    view = view[os.write(fd, view):]

            retry_while_full(put, retry_seconds=retry_seconds)
    finally:
        os.close(fd)


class _SpoolWriter(_FileWriter):
    def __init__(self, sink: FsspecLogSink, key: str, *, stream: str, resume: bool) -> None:
        self._sink = sink
        self._key = key
        fd, name = tempfile.mkstemp(prefix="batchdrain-log-")
        os.close(fd)
        self._spool = Path(name)
        url = sink.url_for(key)
        if resume and sink.fs.exists(url):
            with sink.fs.open(url, "rb") as remote, self._spool.open("wb") as local:
                shutil.copyfileobj(remote, local, CHUNK)
        super().__init__(self._spool, stream=stream, url=url, resume=resume,
                         retry_seconds=sink.write_retry_seconds)

    def close(self) -> LogPointer:
        pointer = super().close()
        self._sink.fs.put_file(str(self._spool), pointer.url)
        self._spool.unlink(missing_ok=True)
        return pointer


class FsspecLogSink:
    """Any fsspec filesystem (``s3://bucket/prefix``); uploads each log when it closes."""

    def __init__(self, url: str, *, write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS) -> None:
        import fsspec

        self.write_retry_seconds = write_retry_seconds
        self.base = url.rstrip("/")
        self.fs = fsspec.core.url_to_fs(url)[0]

    def location(self) -> str:
        return self.base

    def url_for(self, key: str) -> str:
        return f"{self.base}/{key}"

    def open(self, key: str, *, stream: str, resume: bool = False) -> _SpoolWriter:
        return _SpoolWriter(self, key, stream=stream, resume=resume)

    def put(self, key: str, data: bytes) -> str:
        url = self.url_for(key)
        with self.fs.open(url, "wb") as handle:
            handle.write(data)
        return url

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        """Spooled to a local file, uploaded whole: a failure half-way uploads nothing
        (an object store's open-for-write would commit the half on close)."""
        fd, name = tempfile.mkstemp(prefix="batchdrain-report-")
        os.close(fd)
        spool = Path(name)
        url = self.url_for(key)
        try:
            _write_chunks(spool, chunks, retry_seconds=self.write_retry_seconds)
            self.fs.put_file(str(spool), url)
        finally:
            spool.unlink(missing_ok=True)
        return url

    def read(self, url: str) -> Iterator[bytes]:
        with self.fs.open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")


def open_log_sink(location: str, *,
                  write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS) -> FileLogSink | FsspecLogSink:
    if "://" in location and not location.startswith("file://"):
        return FsspecLogSink(location, write_retry_seconds=write_retry_seconds)
    return FileLogSink(location.removeprefix("file://"), write_retry_seconds=write_retry_seconds)
