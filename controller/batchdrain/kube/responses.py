"""HTTP responses of the real seam: Kubernetes' errors mapped to ours, and streams.

Log and watch responses are read as they arrive; ``close()`` from any thread shuts the
socket down so that a reader blocked in ``recv()`` wakes at once (how an attempt is
interrupted without a timeout poll). Error bodies (a ``Status`` object) become the
matching ``batchdrain.kube.errors`` class with the server's reason, message, details
and Retry-After.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3

from batchdrain.domain import utcnow
from batchdrain.kube.api import WatchEvent
from batchdrain.kube.errors import Gone, KubeError, Silent, Unreachable, error_for_status

CHUNK = 64 * 1024


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - utcnow()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def error_from_body(status: int, body: bytes | str | None, headers: Any, *, creating: bool) -> KubeError:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    reason: str | None = None
    message = text.strip()[:500] or f"HTTP {status}"
    details: dict[str, Any] | None = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        reason = parsed.get("reason")
        message = str(parsed.get("message") or message)
        details = parsed.get("details")
    return error_for_status(
        status,
        message,
        reason=reason,
        retry_after=retry_after(headers),
        creating=creating,
        details=details,
    )


class ResponseStream:
    """A streaming HTTP response; ``close()`` from another thread aborts a blocked read.

    The connection goes back to urllib3's pool from one thread only: the reader's, when
    ``close()`` came while it was reading, else the closer's. Releasing it from the
    closer while the reader was still in a read let urllib3's own release on the
    reader's side (its error path) race ours: the same connection was handed to two
    requests at once, one closed its socket under the other (``ValueError: file
    descriptor cannot be a negative integer`` in a log pump on the kwok rig, the log it
    was following cut short with nothing said).
    """

    def __init__(self, response: Any) -> None:
        self._response = response
        self._lock = threading.Lock()
        self._closed = False
        self._reading = False
        self._released = False

    def chunks(self) -> Iterator[bytes]:
        reads = self._response.stream(CHUNK, decode_content=True)
        try:
            while (chunk := self._next(reads)) is not None:
                if chunk:
                    yield chunk
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as err:
            if self._closed:
                return
            raise Silent(f"stream silent past its read timeout: {err!r}") from err
        except (urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError) as err:
            # AttributeError/ValueError: http.client's reader after another thread closed
            # the response (its file object is gone); expected only when we closed it.
            if self._closed:
                return
            raise Unreachable(f"stream broken: {err!r}") from err
        finally:
            self.close()

    def _next(self, reads: Iterator[bytes]) -> bytes | None:
        """The next chunk, or None at the end or once closed (then nothing more is read)."""
        with self._lock:
            if self._closed:
                return None
            self._reading = True
        try:
            chunk = next(reads, None)
        finally:
            with self._lock:
                self._reading = False
                closed = self._closed
            if closed:
                self._release()  # the closer left the connection to this thread
        # Closed meanwhile: this read may not be the server's bytes. A TLS socket's
        # shutdown() drops its TLS layer (ssl.SSLSocket sets _sslobj = None), so a read
        # after it returns the raw records still in the kernel's buffer, ciphertext, as
        # if they were the body.
        return None if closed else chunk

    def close(self) -> None:
        with self._lock:
            first = not self._closed
            self._closed = True
            reading = self._reading
        if not reading:
            self._release()
            return
        if first:
            # Shutting the socket down is what wakes a reader blocked in recv(); closing
            # the response alone waits for that reader's lock, i.e. for the next byte or
            # timeout. The reader releases the connection when its read returns.
            sock = socket_of(self._response)
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed by the peer: nothing to wake
                    sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        # http.client may refuse the flush of a file the reading side already closed
        # ("I/O operation on closed file"): closed is what was asked (seen once in
        # 10,000 Jobs on the kwok rig, where it crashed the attempt and left its Job).
        with contextlib.suppress(ValueError):
            self._response.close()
        self._response.release_conn()


def socket_of(response: Any) -> socket.socket | None:
    """The TCP socket under a urllib3 response (its connection's, or the raw file's)."""
    connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    raw = getattr(getattr(getattr(response, "_fp", None), "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class LogStream(ResponseStream):
    def __iter__(self) -> Iterator[bytes]:
        return self.chunks()


class WatchStream(ResponseStream):
    def __iter__(self) -> Iterator[WatchEvent]:
        buffer = b""
        for chunk in self.chunks():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield watch_event(line)
        if buffer.strip():
            yield watch_event(buffer)


def watch_event(line: bytes) -> WatchEvent:
    event = json.loads(line)
    kind = event.get("type", "")
    obj = event.get("object") or {}
    if kind == "ERROR":
        status = int(obj.get("code") or 0)
        message = str(obj.get("message") or "watch error")
        if status == 410:
            raise Gone(message, status=410, reason=obj.get("reason"))
        raise error_for_status(status or 500, message, reason=obj.get("reason"))
    return kind, obj
