"""A TCP proxy in front of a real server that a test can cut: the store "fails" for real.

Forwards every connection to the upstream until ``cut_when`` (a file) exists; from then
on open connections are closed at their next byte and new ones are closed as soon as
they are accepted, which a client sees as a connection reset: exactly an S3 endpoint
going away mid-session. A phase of the drain creates the file, so the cut falls at a
known point of the session without any timing in the test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit


class CuttableProxy:
    def __init__(self, upstream: str, *, cut_when: Path) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._cut_when = cut_when
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def cut(self) -> bool:
        return self._cut_when.exists()

    def __enter__(self) -> CuttableProxy:
        self._start(self._accept)
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._start(self._pipe, client, upstream)
            self._start(self._pipe, upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.2)
        with contextlib.suppress(OSError):  # the other direction closed the pair: nothing to forward
            self._forward(source, sink)
        for end in (source, sink):
            with contextlib.suppress(OSError):  # already shut by the other direction's pipe
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _forward(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                if self.cut():
                    return
                continue
            if not data or self.cut():
                return
            sink.sendall(data)
