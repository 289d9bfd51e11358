"""Durable log storage: the ``LogSink`` seam.

Logs are written as they arrive, chunk by chunk, so whatever a phase printed before a
crash, an eviction or a pod deletion is already on disk. Bytes are stored exactly as
received (no decoding), and size and sha256 are computed while streaming so that
huge logs never sit in memory.

Backends: a local directory (the default, a PVC in-cluster); ``s3://bucket/prefix``
(the extra ``batchdrain[s3]``), stored while it is written as segment objects composed
on close (``objects``); any other fsspec URL (``memory://...``), spooled to a local file
and uploaded on close (``spooled``). A store that fails us raises ``LogStoreError``: the
controller's failure, which halts the session and is charged to no phase.

A full volume (ENOSPC, EDQUOT) is usually temporary (a cleanup job, a resized PVC), so
a write that hits it is retried for ``write_retry_seconds``; meanwhile the writer's
caller blocks, and so does whatever feeds it (a phase's pipe, a pod log stream), which
loses nothing. Past the bound the log is closed off at the last whole chunk, further
chunks are counted but dropped, and the pointer says so (``incomplete``): the size and
sha256 recorded always describe exactly the bytes on disk.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchdrain.domain import BadInput
from batchdrain.logstore.base import (
    CHUNK,
    DEFAULT_WRITE_RETRY_SECONDS,
    HEADER_END,
    LogSink,
    LogStoreError,
    LogStoreUnreadable,
    LogWriter,
    is_volume_full,
    probe_store,
    retry_while_full,
    store_error,
    stored_content,
)
from batchdrain.logstore.files import FileLogSink
from batchdrain.logstore.keys import legacy_log_key, log_key, safe_name
from batchdrain.logstore.objects import S3LogSink
from batchdrain.logstore.spooled import FsspecLogSink

__all__ = [
    "CHUNK",
    "DEFAULT_WRITE_RETRY_SECONDS",
    "HEADER_END",
    "FileLogSink",
    "FsspecLogSink",
    "LogSink",
    "LogStoreError",
    "LogStoreUnreadable",
    "LogWriter",
    "S3LogSink",
    "is_volume_full",
    "legacy_log_key",
    "log_key",
    "open_log_sink",
    "probe_store",
    "retry_while_full",
    "safe_name",
    "store_error",
    "stored_content",
]


def open_log_sink(location: str, *, write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS,
                  options: Mapping[str, str] | None = None, retry_attempts: int = 6,
                  retry_max_seconds: float = 30.0) -> LogSink:
    """The sink for ``location``; ``BadInput`` (one line) for options it does not take or a
    missing extra. ``options`` are ``--log-store-option`` values, for ``s3://`` only."""
    if location.startswith("s3://"):
        return S3LogSink(location, options=options, retry_attempts=retry_attempts,
                         retry_max_seconds=retry_max_seconds)
    if options:
        raise BadInput(f"--log-store-option is for s3:// log stores, not {location!r}")
    if "://" in location and not location.startswith("file://"):
        return FsspecLogSink(location, write_retry_seconds=write_retry_seconds)
    return FileLogSink(location.removeprefix("file://"), write_retry_seconds=write_retry_seconds)
