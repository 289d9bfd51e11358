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

from batchdrain.logstore.base import (
    CHUNK,
    DEFAULT_WRITE_RETRY_SECONDS,
    HEADER_END,
    LogSink,
    LogStoreUnreadable,
    LogWriter,
    is_volume_full,
    retry_while_full,
    stored_content,
)
from batchdrain.logstore.files import FileLogSink
from batchdrain.logstore.keys import legacy_log_key, log_key, safe_name
from batchdrain.logstore.objects import FsspecLogSink

__all__ = [
    "CHUNK",
    "DEFAULT_WRITE_RETRY_SECONDS",
    "HEADER_END",
    "FileLogSink",
    "FsspecLogSink",
    "LogSink",
    "LogStoreUnreadable",
    "LogWriter",
    "is_volume_full",
    "legacy_log_key",
    "log_key",
    "open_log_sink",
    "retry_while_full",
    "safe_name",
    "stored_content",
]


def open_log_sink(location: str, *,
                  write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS) -> FileLogSink | FsspecLogSink:
    if "://" in location and not location.startswith("file://"):
        return FsspecLogSink(location, write_retry_seconds=write_retry_seconds)
    return FileLogSink(location.removeprefix("file://"), write_retry_seconds=write_retry_seconds)
