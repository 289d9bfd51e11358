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
    """A streaming HTTP response; ``close()`` from another thread aborts a blocked read."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._lock = threading.Lock()
        self._closed = False

    def chunks(self) -> Iterator[bytes]:
        try:
            for chunk in self._response.stream(CHUNK, decode_content=True):
                if self._closed:
                    # Closed meanwhile: this read may not be the server's bytes. A TLS
                    # socket's shutdown() drops its TLS layer (ssl.SSLSocket sets
                    # _sslobj = None), so a read after it returns the raw records still
                    # in the kernel's buffer, ciphertext, as if they were the body.
                    return
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

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Shutting the socket down is what wakes a reader blocked in recv(); closing the
        # response alone waits for that reader's lock, i.e. for the next byte or timeout.
        sock = socket_of(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer: nothing to wake
                sock.shutdown(socket.SHUT_RDWR)
        # The reading thread, woken by that shutdown, may be closing the same http.client
        # file at this moment; its buffered reader then refuses our flush with "I/O
        # operation on closed file". Closed is what was asked (seen once in 10,000 Jobs on
        # the kwok rig, where it crashed the attempt and left its Job behind).
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
