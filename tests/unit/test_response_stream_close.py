"""The real seam's streams after ``close()`` from another thread: nothing more comes out.

Bug: closing a followed log mid-transfer shuts the TLS socket down under the reading
thread, and ``ssl.SSLSocket.shutdown`` drops the TLS layer (``_sslobj = None``): a read
after it returns the raw records left in the kernel buffer, ciphertext, and the stream
yielded them as log bytes. Once on the e2e cluster a 50 MiB stdout was stored as
4,340,224 bytes ending in random bytes (the checked re-read then refused to go on).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

from batchdrain.kube.responses import LogStream as _LogStream


class _Response:
    """Stands in for a urllib3 response whose reads go on returning bytes after close."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.closed = False
        self.released = False

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


def test_a_log_stream_closed_mid_read_yields_nothing_read_after_the_close() -> None:
    response = _Response([b"log bytes ", b"\x17\x03\x03 ciphertext read after shutdown"])
    stream = _LogStream(response)
    got = []
    for chunk in stream:
        got.append(chunk)
        stream.close()  # what cut_follow does from the supervisor's thread
    assert got == [b"log bytes "]
    assert response.closed and response.released


class _ClosedUnderUs(_Response):
    """http.client's response when the reading thread closed its file as we closed it."""

    def close(self) -> None:
        self.closed = True
        raise ValueError("I/O operation on closed file.")


def test_closing_a_stream_its_reader_is_closing_too_is_no_error() -> None:
    # Once in 10,000 Jobs on the kwok rig: the supervisor's close raced the log pump's,
    # http.client's flush raised, and the attempt ended "executor error" with its Job left.
    response = _ClosedUnderUs([b"log bytes "])
    stream = _LogStream(response)
    stream.close()
    assert response.closed and response.released


class _BlockingResponse:
    """A response whose read blocks in ``recv()`` on a real socket until it is shut down,
    and that records which thread gave the connection back, and when."""

    def __init__(self) -> None:
        self.ours, self.peer = socket.socketpair()
        self.connection = type("Conn", (), {"sock": self.ours})()
        self.in_read = threading.Event()
        self.read_returned = threading.Event()
        self.releases: list[tuple[str, bool]] = []

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        self.peer.sendall(b"first ")
        yield self.ours.recv(amt)
        self.in_read.set()
        data = self.ours.recv(amt)  # blocks until the shutdown wakes it (b"")
        self.read_returned.set()
        if data:
            yield data

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        self.releases.append((threading.current_thread().name, self.read_returned.is_set()))


def test_a_stream_closed_while_its_reader_is_in_a_read_is_released_by_the_reader_once() -> None:
    # Bug: close() gave the connection back to the pool from the closing thread while the
    # reader was still in its read, and urllib3 gave it back again from the reader's side:
    # two requests got the same connection and one closed its socket under the other
    # (ValueError: file descriptor cannot be a negative integer, a log cut short, silently).
    response = _BlockingResponse()
    stream = _LogStream(response)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(stream), name="reader")
    reader.start()
    assert response.in_read.wait(5)
    time.sleep(0.05)  # let the reader block in recv()
    stream.close()
    reader.join(5)
    assert not reader.is_alive()
    assert got == [b"first "]
    assert response.releases == [("reader", True)]  # once, by the reader, after its read
    stream.close()
    assert response.releases == [("reader", True)]
    response.ours.close()
    response.peer.close()


def test_a_stream_closed_between_reads_is_released_by_the_closer_and_read_no_more() -> None:
    response = _Response([b"a", b"b", b"c"])
    stream = _LogStream(response)
    chunks = iter(stream)
    assert next(chunks) == b"a"
    stream.close()
    assert response.released
    assert list(chunks) == []
