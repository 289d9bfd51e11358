"""Any other fsspec URL as the log store (``memory://`` in tests, ``gcs://``...): spooled.

Each log is spooled to a local file and uploaded whole when it closes; ``s3://`` has
its own sink (``objects``), which stores logs while they are written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchdrain.domain import LogPointer
from batchdrain.logstore.base import CHUNK, DEFAULT_WRITE_RETRY_SECONDS
from batchdrain.logstore.files import FileWriter, write_chunks


class _SpoolWriter(FileWriter):
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
    """Any other fsspec filesystem (``memory://``, ``gcs://``...); uploads each log when it closes."""

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
            write_chunks(spool, chunks, retry_seconds=self.write_retry_seconds)
            self.fs.put_file(str(spool), url)
        finally:
            spool.unlink(missing_ok=True)
        return url

    def read(self, url: str) -> Iterator[bytes]:
        with self.fs.open(url, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

    def tail(self, url: str, size: int) -> bytes | None:
        if not self.fs.exists(url):
            return None
        with self.fs.open(url, "rb") as handle:
            handle.seek(max(0, int(self.fs.size(url)) - size))
            data: bytes = handle.read(size)
            return data

    def delete(self, key: str) -> None:
        self.fs.rm_file(self.url_for(key))
