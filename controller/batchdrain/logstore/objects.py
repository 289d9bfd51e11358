"""``s3://`` as the log store: logs written as they come, in bounded memory, resumable.

An ``s3://bucket/prefix`` log is stored while the pod runs, in bounded memory, as
*segment objects* composed into the log's own object when it closes:

* The open segment's bytes are held in memory (at most ``part_size``, 8 MiB by default,
  plus one chunk) and written as ``<key>.parts/<n>`` every ``flush_seconds`` (the same
  object again, longer) and when it is full; then segment ``n + 1`` begins. Every
  segment but the last is therefore at least 5 MiB: S3's smallest part.
* Closing composes the segments into ``<key>`` with a multipart upload whose parts are
  server-side copies of the sealed segments plus the open one's bytes (a log shorter
  than a segment is one PUT), checks the object's size and multipart ETag against what
  was written, and deletes the segments. A 5 GB log is never held, nor re-sent.
* Readers take ``<key>`` when it exists, else the segments in order: a running log (the
  live view, ``batchdrain logs``, an adopting controller) reads what is stored so far.
* Resuming (adoption) reads what a previous controller stored, hashes it and goes on
  after it: the last, unsealed segment back into memory, a composed log back into a
  segment first. What was stored is always a prefix of what was written (a PUT is
  atomic), so the log cursor's skip loses and repeats nothing.

Each PUT carries the segment's sha256 (``x-amz-checksum-sha256``), which the server
checks; each upload and read goes through ``s3client``'s one retry policy, and what
outlives it is a ``LogStoreError``: the session halts, no phase is charged.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from batchdrain.domain import BadInput, LogPointer
from batchdrain.logstore.base import LogStoreError, store_error
from batchdrain.logstore.multipart import MAX_COPY, Segment, Upload, etag_of
from batchdrain.logstore.s3client import S3Client, S3Options

_PARTS = ".parts/"
_DELETE_BATCH = 1000


def segment_key(key: str, index: int) -> str:
    return f"{key}{_PARTS}{index:06d}"


class S3LogSink:
    """``s3://bucket/prefix``: logs as segment objects composed on close (module docstring)."""

    def __init__(self, url: str, *, options: Mapping[str, str] | None = None,
                 retry_attempts: int = 6, retry_max_seconds: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise BadInput(f"log store {url!r}: expected s3://bucket[/prefix]")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.base = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.options = S3Options.parse(options or {}, retry_attempts=retry_attempts,
                                       retry_max_seconds=retry_max_seconds)
        self.client = S3Client(self.options)
        self._writers: weakref.WeakSet[S3Writer] = weakref.WeakSet()
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()

    def _watch(self, writer: S3Writer) -> None:
        """Have ``writer`` flushed every ``flush_seconds`` even when nothing more is written.

        A phase that prints a line and then works for an hour must have that line stored
        (and shown by the live view) now, not when its next line comes. One daemon thread
        per sink does it for every open log; it holds them weakly and never blocks a write.
        """
        if self.options.flush_seconds <= 0:
            return
        with self._flusher_lock:
            self._writers.add(writer)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="s3-log-flush", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        """Runs while a log is open: it ends once none is (the next ``open`` starts another)."""
        while True:
            time.sleep(self.options.flush_seconds / 2)
            with self._flusher_lock:
                writers = [w for w in self._writers if not w.closed]
                if not writers:
                    self._flusher = None
                    return
            for writer in writers:
                writer.flush_if_due()

    def location(self) -> str:
        return self.base

    def url_for(self, key: str) -> str:
        return f"{self.base}/{key}"

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def split(self, url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise FileNotFoundError(errno.ENOENT, f"not an s3:// URL: {url}")
        return parts.netloc, parts.path.lstrip("/")

    def open(self, key: str, *, stream: str, resume: bool = False) -> S3Writer:
        writer = S3Writer(self, self.object_key(key), stream=stream, resume=resume)
        self._watch(writer)
        return writer

    def put(self, key: str, data: bytes) -> str:
        return self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        """One PUT when it fits a part, else a multipart upload fed as chunks come: readers see
        the whole object or none (an upload that fails is aborted), memory stays one part."""
        name = self.object_key(key)
        what = f"storing {self.bucket}/{name}"
        buffer = bytearray()
        upload: Upload | None = None
        try:
            for chunk in chunks:
                buffer += chunk
                if len(buffer) >= self.options.part_size:
                    upload = upload or Upload(self.client, self.bucket, name)
                    upload.part(bytes(buffer))
                    buffer = bytearray()
            if upload is None:
                self.put_object(name, bytes(buffer), what)
            else:
                if buffer:
                    upload.part(bytes(buffer))
                upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return self.url_for(key)

    def put_object(self, name: str, data: bytes, what: str) -> str:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        response = self.client.call("put_object", what, Bucket=self.bucket, Key=name, Body=data,
                                    ChecksumSHA256=digest)
        etag = etag_of(response.get("ETag"))
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if len(etag) == 32 and etag != md5:
            raise LogStoreError(errno.EIO, f"{what}: the server stored other bytes (ETag {etag}, sent {md5})")
        return etag

    def head(self, name: str) -> dict[str, Any] | None:
        try:
            return self.client.call("head_object", f"reading {self.bucket}/{name}", Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return None

    def segments(self, name: str) -> list[Segment]:
        """The segment objects of a log that is being written (none once it is composed)."""
        found: list[Segment] = []
        token: dict[str, str] = {}
        while True:
            page = self.client.call("list_objects_v2", f"listing {self.bucket}/{name}{_PARTS}",
                                    Bucket=self.bucket, Prefix=name + _PARTS, **token)
            found += [Segment(o["Key"], int(o["Size"]), etag_of(o.get("ETag"))) for o in page.get("Contents") or []]
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        return sorted(found, key=lambda s: s.key)

    def delete_objects(self, names: list[str], what: str) -> None:
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start:start + _DELETE_BATCH]
            response = self.client.call("delete_objects", what, Bucket=self.bucket,
                                        Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                raise LogStoreError(errno.EIO, f"{what}: {errors[0].get('Key')}: {errors[0].get('Message')}")

    def read(self, url: str) -> Iterator[bytes]:
        bucket, name = self.split(url)
        what = f"reading {bucket}/{name}"
        try:
            yield from self.client.stream(bucket, name, what)
            return
        except FileNotFoundError:
            pass  # not composed (yet): the segments are the log so far
        offset = 0
        segments = self.segments(name)
        if not segments:
            raise FileNotFoundError(errno.ENOENT, f"{what}: not found")
        for segment in segments:
            try:
                for chunk in self.client.stream(bucket, segment.key, what):
                    offset += len(chunk)
                    yield chunk
            except FileNotFoundError:
                # Composed (and the segments deleted) while we read: the rest is in the log.
                yield from self.client.stream(bucket, name, what, start=offset)
                return

    def tail(self, url: str, size: int) -> bytes | None:
        bucket, name = self.split(url)
        head = self.head(name)
        if head is None:
            segments = self.segments(name)
            if not segments:
                return None
            name, length = segments[-1].key, segments[-1].size
        else:
            length = int(head.get("ContentLength") or 0)
        return b"".join(self.client.stream(bucket, name, f"reading {bucket}/{name}", start=max(0, length - size)))

    def delete(self, key: str) -> None:
        name = self.object_key(key)
        self.client.call("delete_object", f"deleting {self.bucket}/{name}", Bucket=self.bucket, Key=name)


class S3Writer:
    """One log being stored as segments (module docstring); thread-safe like ``FileWriter``."""

    def __init__(self, sink: S3LogSink, name: str, *, stream: str, resume: bool) -> None:
        self._sink = sink
        self._name = name
        self._stream = stream
        self._url = f"s3://{sink.bucket}/{name}"
        self._what = f"storing the log {self._url}"
        self._part_size = sink.options.part_size
        self._flush_seconds = sink.options.flush_seconds
        self._lock = threading.Lock()
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()  # every byte of the open segment
        self._index = 0  # the open segment's number
        self._flushed = 0  # bytes of the open segment already stored
        self._sealed: list[Segment] = []
        self._closed: LogPointer | None = None
        self._failed: OSError | None = None
        self._stall_started: float | None = None
        self._stalled_seconds = 0.0
        if resume:
            self._resume()
        else:
            self._clear()
        self._last_flush = time.monotonic()

    @property
    def size(self) -> int:
        return self._size

    @property
    def stalled(self) -> bool:
        return self._stall_started is not None

    @property
    def closed(self) -> bool:
        """Closed, or failed for good: nothing more will be stored."""
        return self._closed is not None or self._failed is not None

    # -- opening ---------------------------------------------------------------------
    def _clear(self) -> None:
        """A fresh log replaces whatever an earlier writer of this key left (as O_TRUNC)."""
        stale = [s.key for s in self._sink.segments(self._name)]
        if self._sink.head(self._name) is not None:
            stale.append(self._name)
        if stale:
            self._sink.delete_objects(stale, f"clearing {self._url}")

    def _resume(self) -> None:
        head = self._sink.head(self._name)
        segments = self._sink.segments(self._name)
        if head is not None:
            # A composed log goes back into segment 0 before it is removed: from then on
            # the segments are the log, exactly as when it was being written.
            if segments:  # left by a compose that finished: the log holds them all
                self._sink.delete_objects([s.key for s in segments], f"clearing {self._url}")
            segments = [self._reopen_composed(int(head.get("ContentLength") or 0))]
        for segment in segments[:-1]:
            self._hash_stored(segment)
            self._sealed.append(segment)
        if segments:
            last = segments[-1]
            if last.size < self._part_size:
                self._buffer = bytearray(b"".join(self._read(last.key)))
                self._hash.update(self._buffer)
                self._size += len(self._buffer)
                self._flushed = len(self._buffer)
                self._index = int(last.key.rsplit("/", 1)[1])
            else:
                self._hash_stored(last)
                self._sealed.append(last)
                self._index = int(last.key.rsplit("/", 1)[1]) + 1

    def _reopen_composed(self, size: int) -> Segment:
        key = segment_key(self._name, 0)
        what = f"resuming {self._url}"
        if size > MAX_COPY:
            raise LogStoreError(errno.EFBIG, f"{what}: a composed log over 5 GiB cannot be reopened")
        response = self._sink.client.call("copy_object", what, Bucket=self._sink.bucket, Key=key,
                                          CopySource={"Bucket": self._sink.bucket, "Key": self._name})
        etag = etag_of((response.get("CopyObjectResult") or {}).get("ETag"))
        self._sink.client.call("delete_object", what, Bucket=self._sink.bucket, Key=self._name)
        return Segment(key, size, etag)

    def _read(self, key: str) -> Iterator[bytes]:
        return self._sink.client.stream(self._sink.bucket, key, f"resuming {self._url}")

    def _hash_stored(self, segment: Segment) -> None:
        got = 0
        for chunk in self._read(segment.key):
            self._hash.update(chunk)
            got += len(chunk)
        if got != segment.size:
            raise LogStoreError(errno.EIO, f"resuming {self._url}: {segment.key} read {got} of {segment.size} bytes")
        self._size += got

    # -- writing ---------------------------------------------------------------------
    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self._lock:
            if self._closed is not None:
                raise OSError(errno.EBADF, f"log {self._url} already closed")
            if self._failed is not None:
                raise self._failed
            self._buffer += chunk
            self._hash.update(chunk)
            self._size += len(chunk)
            if len(self._buffer) >= self._part_size:
                self._store(seal=True)
            elif time.monotonic() - self._last_flush >= self._flush_seconds:
                self._store(seal=False)

    def flush(self) -> None:
        """Store the open segment now (the sink's flusher does so every ``flush_seconds``)."""
        with self._lock:
            if self._closed is None and self._failed is None:
                self._store(seal=False)

    def flush_if_due(self) -> None:
        """The flusher's call: store unflushed bytes older than ``flush_seconds``, unless a
        write holds the writer (it stores them itself). A failure fails the writer: its next
        write or its close raises it to the attempt."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            due = time.monotonic() - self._last_flush >= self._flush_seconds
            if self._closed is None and self._failed is None and due and len(self._buffer) > self._flushed:
                try:
                    self._store(seal=False)
                except OSError as err:
                    # Kept for the attempt: its next write or its close raises it.
                    self._failed = self._failed or store_error(err, self._what)
        finally:
            self._lock.release()

    def _store(self, *, seal: bool) -> None:
        """Write the open segment (all of it again: a PUT replaces, never appends)."""
        if len(self._buffer) > self._flushed or (seal and self._buffer):
            key = segment_key(self._name, self._index)
            data = bytes(self._buffer)
            etag = self._guarded(lambda: self._sink.put_object(key, data, self._what))
            self._flushed = len(self._buffer)
            if seal:
                self._sealed.append(Segment(key, len(data), etag))
                self._index += 1
                self._buffer = bytearray()
                self._flushed = 0
        self._last_flush = time.monotonic()

    def _guarded(self, fn: Any) -> Any:
        """Run an upload; a failure past the retries fails the writer for good."""
        self._stall_started = time.monotonic()
        try:
            return fn()
        except OSError as err:
            self._failed = err if isinstance(err, LogStoreError) else LogStoreError(
                err.errno or errno.EIO, f"{self._what}: {err}")
            raise self._failed from err
        finally:
            if self._stall_started is not None:
                self._stalled_seconds += time.monotonic() - self._stall_started
                self._stall_started = None

    # -- closing ---------------------------------------------------------------------
    def close(self) -> LogPointer:
        with self._lock:
            if self._closed is not None:
                return self._closed
            if self._failed is not None:
                raise self._failed
            self._guarded(self._compose)
            self._buffer = bytearray()
            self._closed = LogPointer(stream=self._stream, url=self._url, size_bytes=self._size,
                                      sha256=self._hash.hexdigest(), incomplete=None, stalled_seconds=0.0)
            return self._closed

    def _compose(self) -> None:
        sink = self._sink
        if not self._sealed:
            sink.put_object(self._name, bytes(self._buffer), self._what)
        else:
            upload = Upload(sink.client, sink.bucket, self._name)
            try:
                for segment in self._sealed:
                    upload.copy(segment)
                if self._buffer:
                    upload.part(bytes(self._buffer))
                upload.complete()
            except BaseException:
                upload.abort()
                raise
            self._check(upload.expectedetag_of())
        stored = [s.key for s in self._sealed]
        if self._flushed:
            stored.append(segment_key(self._name, self._index))
        if stored:
            sink.delete_objects(stored, f"removing the segments of {self._url}")

    def _check(self, etag: str | None) -> None:
        head = self._sink.head(self._name)
        size = int((head or {}).get("ContentLength") or -1)
        if size != self._size:
            raise LogStoreError(errno.EIO, f"{self._what}: composed {size} bytes, wrote {self._size}")
        got = etag_of((head or {}).get("ETag"))
        if etag is not None and "-" in got and got != etag:
            raise LogStoreError(errno.EIO, f"{self._what}: composed object has ETag {got}, expected {etag}")
