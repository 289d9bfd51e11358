"""A local directory as the log store (the default; a PVC in the cluster).

A full volume is waited for (``retry_while_full``); any other failure to write is the
store's (``LogStoreError``: a directory that cannot be created or written, a volume
gone read-only), so the session halts instead of charging the phase.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchdrain.domain import LogPointer
from batchdrain.logstore.base import (
    CHUNK,
    DEFAULT_WRITE_RETRY_SECONDS,
    describe,
    is_volume_full,
    retry_while_full,
    store_error,
)


class FileWriter:
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
                    raise store_error(err, f"cannot write the log {self._url}") from err
                # Cut the part of this chunk that did fit: the file stays exactly the
                # chunks that size and sha256 describe, and nothing after a gap is kept.
                os.ftruncate(self._fd, self._size)
                self._gave_up = f"{describe(err)} for {self._retry_seconds:g}s"
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
                        raise store_error(err, f"cannot write the log {self._url}") from err
                    self._gave_up = self._gave_up or f"{describe(err)} at fsync"
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

    def open(self, key: str, *, stream: str, resume: bool = False) -> FileWriter:
        path = self.root / key
        try:
            return FileWriter(path, stream=stream, url=str(path), resume=resume,
                              retry_seconds=self.write_retry_seconds)
        except OSError as err:
            raise store_error(err, f"cannot open the log {path}") from err

    def put(self, key: str, data: bytes) -> str:
        """Store a whole file; a full volume is waited for, then the OSError is raised."""
        return self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        """``put`` for a file too large to hold: each chunk is written (and waited for on a
        full volume) as it comes, into a temporary file renamed into place at the end, so
        readers see the old or the new file, never half of one, and a failure leaves none."""
        path = self.root / key
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_chunks(tmp, chunks, retry_seconds=self.write_retry_seconds)
            os.replace(tmp, path)
        except BaseException as err:
            if tmp.exists():  # False too when the directory itself could not be made
                tmp.unlink()
            if isinstance(err, OSError) and not is_volume_full(err):
                raise store_error(err, f"cannot store {path}") from err
            raise
        return str(path)

    def read(self, url: str) -> Iterator[bytes]:
        with open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

    def tail(self, url: str, size: int) -> bytes | None:
        try:
            with open(url, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
                return handle.read(size)
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


def write_chunks(path: Path, chunks: Iterable[bytes], *, retry_seconds: float) -> None:
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
