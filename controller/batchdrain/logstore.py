"""Durable log storage: the ``LogSink`` seam.

Logs are written as they arrive, chunk by chunk, so whatever a phase printed before a
crash, an eviction or a pod deletion is already on disk. Bytes are stored exactly as
received (no decoding), and size and sha256 are computed while streaming so that
huge logs never sit in memory.

Backends: a local directory (the default, a PVC in-cluster) and any fsspec URL
(``s3://...``, ``memory://...``), which spools to a local file and uploads on close.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from batchdrain.domain import LogPointer

CHUNK = 64 * 1024
_MAX_NAME_PART = 80


def safe_name(value: str) -> str:
    """A file-name-safe rendering of a free-text id; a hash keeps distinct ids distinct."""
    quoted = quote(value, safe="-_.~ ").replace(" ", "_")
    quoted = re.sub(r"^\.+", "_", quoted)
    if quoted == value and len(value) <= _MAX_NAME_PART:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{quoted[:_MAX_NAME_PART]}-{digest}"


def log_key(session_id: str, run_id: str, phase_id: str, attempt: int, stream: str) -> str:
    suffix = "log" if stream == "combined" else f"{stream}.log"
    return f"{safe_name(session_id)}/{safe_name(run_id)}__{safe_name(phase_id)}.attempt-{attempt}.{suffix}"


class LogWriter(Protocol):
    """An open log: append chunks, then close to get the pointer with size and sha256."""

    @property
    def size(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> LogPointer: ...


class LogSink(Protocol):
    def open(self, key: str, *, stream: str, resume: bool = False) -> LogWriter: ...

    def put(self, key: str, data: bytes) -> str: ...

    def url_for(self, key: str) -> str: ...

    def read(self, url: str) -> Iterator[bytes]: ...

    def location(self) -> str: ...


class _FileWriter:
    def __init__(self, path: Path, *, stream: str, url: str, resume: bool) -> None:
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

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._hash.update(chunk)
        self._size += len(chunk)

    def close(self) -> LogPointer:
        if self._closed is None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._closed = LogPointer(
                stream=self._stream, url=self._url, size_bytes=self._size, sha256=self._hash.hexdigest()
            )
        return self._closed


class FileLogSink:
    """Logs under a local directory; pointers are absolute paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def location(self) -> str:
        return str(self.root)

    def url_for(self, key: str) -> str:
        return str(self.root / key)

    def open(self, key: str, *, stream: str, resume: bool = False) -> _FileWriter:
        path = self.root / key
        return _FileWriter(path, stream=stream, url=str(path), resume=resume)

    def put(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the old or the new file, never half of one
        return str(path)

    def read(self, url: str) -> Iterator[bytes]:
        with open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")


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
        super().__init__(self._spool, stream=stream, url=url, resume=resume)

    def close(self) -> LogPointer:
        pointer = super().close()
        self._sink.fs.put_file(str(self._spool), pointer.url)
        self._spool.unlink(missing_ok=True)
        return pointer


class FsspecLogSink:
    """Any fsspec filesystem (``s3://bucket/prefix``); uploads each log when it closes."""

    def __init__(self, url: str) -> None:
        import fsspec

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

    def read(self, url: str) -> Iterator[bytes]:
        with self.fs.open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")


def open_log_sink(location: str) -> FileLogSink | FsspecLogSink:
    if "://" in location and not location.startswith("file://"):
        return FsspecLogSink(location)
    return FileLogSink(location.removeprefix("file://"))
