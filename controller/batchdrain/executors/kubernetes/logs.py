"""Following pod logs into the log store: stored-log handles, pumps and their threads.

Each stream of a pod (stdout and stderr apart when the server splits them, one combined
log otherwise) is followed by a ``LogPump`` on a pooled thread, through a cursor that
stores exactly what the phase wrote and resumes after a drop without a gap or a repeat
(``cursor``: which framing the kubelet serves decides which cursor). Which logs an
attempt has, and how they open and close, is ``logbook``'s.

Retries: opening a stream goes through the seam's one retry policy; a pump never
retries a call itself. It only *resumes* (a new request from the cursor) after a stream
that was open dropped, at most ``LOG_MAX_FAILURES`` times in a row without progress
(new bytes stored: bytes re-sent and skipped are none; a follow that was only silent
past its read timeout counts as progress). An open the kubelet refuses
while the pod still exists (its container runtime restarting answers "rpc error: ...
server is not initialized yet" with a 400) is such a failure too: the log is still on
the node, so the pump asks again after a growing pause (``resume_pause``) instead of
leaving the rest of the log unread. A cursor that cannot store more exactly
(``problem``) stops its pump; the attempt's notes say why.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from batchdrain.domain import LogPointer
from batchdrain.executors.kubernetes.cursor import LogCursor
from batchdrain.executors.kubernetes.watches import Tracker
from batchdrain.jobspec import CONTAINER
from batchdrain.kube import KubeApi, KubeError, LogStreamName, NotFound, Silent, Stream
from batchdrain.logstore import LogStoreError, LogWriter

LOG_MAX_FAILURES = 8
# Pauses before asking again after a refused open: 1, 2, 4, then 8 s (47 s over the
# eight failures allowed), longer than a container runtime takes to restart.
LOG_LONGEST_PAUSE_SECONDS = 8.0


def resume_pause(failures: int) -> float:
    """Seconds to wait before the next open after ``failures`` refused ones in a row."""
    return min(2.0 ** max(failures - 1, 0), LOG_LONGEST_PAUSE_SECONDS)
TAIL_BYTES = 64 * 1024
# An idle log pump thread waits this long for the next attempt's pump before it exits.
PUMP_IDLE_SECONDS = 10.0


class StoredLog:
    """One stored log: the writer plus a bounded tail for the first error line."""

    def __init__(self, writer: LogWriter, stream: str) -> None:
        self.writer = writer
        self.stream = stream
        self.tail = bytearray()
        self.content_bytes = 0
        self.pointer: LogPointer | None = None

    def write(self, data: bytes, *, content: bool = True) -> None:
        if not data:
            return
        self.writer.write(data)
        if content:
            self.content_bytes += len(data)
        self.tail += data
        if len(self.tail) > TAIL_BYTES:
            del self.tail[: len(self.tail) - TAIL_BYTES]

    def close(self) -> LogPointer:
        if self.pointer is None:
            self.pointer = self.writer.close()
        return self.pointer


class PumpThreads:
    """Daemon threads for log pumps, kept for a while when idle to take the next pump.

    Starting a thread in CPython is a handshake (the starter waits until the new thread
    runs), and with a hundred busy workers that wait was the largest single cost of a
    short attempt's log handling. A pump is short-lived and another one starts with
    every attempt, so an idle thread waits ``idle_seconds`` for one before it exits.
    Unbounded like the threads it replaces: every following pump needs its own.
    """

    def __init__(self, *, idle_seconds: float = PUMP_IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle = 0
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def run(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                # Taking the slot and queueing under one lock: an idle thread that times
                # out checks the queue under the same lock, so no task is ever stranded.
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._loop, args=(task,), name="logs", daemon=True).start()

    def _loop(self, task: Callable[[], None]) -> None:
        while True:
            task()
            with self._lock:
                self._idle += 1
            try:
                task = self._tasks.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


# What the kubelet writes as the *body* of a 200 log response when it cannot read the
# log after all (kubelet_pods.go sends 200 before asking the runtime): the container is
# gone, or its log file is. A response that is exactly one such line is no phase output.
# A runtime that is restarting makes the kubelet send the gRPC error's text the same way.
KUBELET_LOG_ERRORS = (b"unable to retrieve container logs for ", b"failed to try resolving symlinks in path ",
                      b"rpc error: code = ")
_MAX_ERROR_BODY = 2048


class KubeletErrorBody:
    """Holds back what may be the kubelet's error until the response says otherwise.

    The head of every response (the whole body may be the error); with ``tail``, also
    the last line of a followed response: a runtime that fails mid-follow
    makes the kubelet append its error after the lines it already sent. A final read
    (the container done, nothing followed) keeps its tail: a phase's own last words may
    look like one.
    """

    def __init__(self) -> None:
        self.error: str | None = None

    def screen(self, chunks: Iterable[bytes], *, tail: bool = False) -> Iterator[bytes]:
        held = b""
        deciding = True
        for chunk in chunks:
            held += chunk
            if deciding:
                if self._may_be_error(held):
                    continue
                deciding = False
            if not tail:
                yield held
                held = b""
                continue
            # The last line, with or without its newline: the error may come either way.
            cut = held.rstrip(b"\n").rfind(b"\n") + 1
            if self._may_be_error(held[cut:]):
                if cut:
                    yield held[:cut]
                    held = held[cut:]
            else:
                yield held
                held = b""
        if held:
            if b"\n" not in held.rstrip(b"\n") and held.startswith(KUBELET_LOG_ERRORS):
                self.error = held.decode("utf-8", "replace").strip()
            else:
                yield held

    @staticmethod
    def _may_be_error(held: bytes) -> bool:
        if len(held) > _MAX_ERROR_BODY or b"\n" in held.rstrip(b"\n"):
            return False
        return any(held.startswith(p) or p.startswith(held) for p in KUBELET_LOG_ERRORS)


class LogPump:
    """Follows one log stream of one pod until the container is done and all is read."""

    def __init__(self, api: KubeApi, *, pod: str, stream: LogStreamName | None, cursor: LogCursor,
                 out: StoredLog, tracker: Tracker, abort: threading.Event) -> None:
        self._api = api
        self._pod = pod
        self._stream = stream
        self.cursor = cursor
        self.out = out
        self._tracker = tracker
        self._abort = abort
        self._lock = threading.Lock()
        self._open: Stream[bytes] | None = None
        self._following = False
        self.error: KubeError | None = None
        # The log store failed under this pump: nothing more can be stored; the attempt
        # is left for the next session (``supervise`` raises it on its next look).
        self.store_error: LogStoreError | None = None
        # Error messages the kubelet sent as a response body instead of log bytes.
        self.kubelet_errors: list[str] = []
        self.reconnects = 0
        self._done: threading.Event | None = None
        # An error no part of the pump expected (a bug here or below the seam): the log
        # stops where it was, and the attempt's record says so.
        self.crashed: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the stored log ends before the served one (the cursor could not go on)."""
        return self.crashed or self.cursor.problem

    def start(self, threads: PumpThreads) -> None:
        done = self._done = threading.Event()

        def task() -> None:
            threading.current_thread().name = f"logs-{self._pod}"
            try:
                self.run()
            finally:
                done.set()

        threads.run(task)

    def join(self, timeout: float) -> bool:
        if self._done is not None:
            return self._done.wait(timeout)
        return True

    def close(self) -> None:
        with self._lock:
            opened = self._open
        if opened is not None:
            opened.close()

    def cut_follow(self) -> None:
        """The container has ended: stop waiting for the kubelet to end the follow.

        The kubelet notices that a followed container exited only on its periodic state
        check (every 5 s), so a follow outlives its container by up to that long, per
        attempt. The pump's next read is the final one (no follow, from the cursor), so
        cutting loses and repeats nothing (a split log's final read re-sends the whole
        stream, see ``ByteCursor``).
        """
        with self._lock:
            opened = self._open if self._following else None
        if opened is not None:
            opened.close()

    def run(self) -> None:
        """Follow the log to its end; an unexpected error ends the pump with ``crashed`` set."""
        try:
            self._follow()
        except Exception as err:  # kept on the attempt (``problem``), never silent
            self.crashed = f"log following stopped by an unexpected {type(err).__name__}: {err}"
            self._tracker.poke()

    def _follow(self) -> None:
        drops = 0
        while not self._abort.is_set():
            final = self._tracker.container_done()
            try:
                opened = self._api.stream_pod_log(
                    self._pod, container=CONTAINER, follow=not final, timestamps=self.cursor.timestamps,
                    since_time=self.cursor.since_time(), stream=self._stream,
                )
            except NotFound as err:
                self.error = err  # the pod is gone: what was stored is all there is
                return
            except KubeError as err:
                # Refused (a 400 from the kubelet) or outlived the seam's retry policy:
                # the pod is still there, so is its log; ask again, a bounded number of times.
                self.error = err
                drops += 1
                self.reconnects += 1
                if drops >= LOG_MAX_FAILURES:
                    return
                self._tracker.wait_for(self._abort.is_set, resume_pause(drops))
                continue
            try:
                ended, dropped, progressed = self._read(opened, final=final)
            except LogStoreError as err:
                self.store_error = err
                self._tracker.poke()  # wake the attempt: it must leave now
                return
            if ended or self.cursor.problem is not None:
                return
            if dropped:
                drops = 1 if progressed else drops + 1
                self.reconnects += 1
                if drops >= LOG_MAX_FAILURES:
                    return
                continue
            drops = 0
            self.reconnects += 1
            # A follow ends when the container exits; the watch says so a moment later.
            self._tracker.wait_for(lambda: self._abort.is_set() or self._tracker.container_done(), 2.0)

    def _read(self, opened: Stream[bytes], *, final: bool) -> tuple[bool, bool, bool]:
        """Read one response into the cursor: (nothing more can come, it dropped, bytes stored)."""
        with self._lock:
            self._open = opened
            self._following = not final
        if self._abort.is_set() or (not final and self._tracker.container_done()):
            opened.close()
        cursor = self.cursor
        cursor.new_connection()
        before = cursor.stored
        guard = KubeletErrorBody()
        try:
            for chunk in guard.screen(opened, tail=not final):
                cursor.feed(chunk)
                if cursor.problem is not None:
                    break
            self.error = None
            if guard.error is not None:
                # The kubelet could no longer read the container's log (removed, rotated
                # away): its message came as the body. It is no output of the phase.
                self.kubelet_errors.append(guard.error)
        except KubeError as err:
            self.error = err  # dropped mid-stream: resume from the cursor
            # A follow silent past its read timeout is a quiet phase as often as a silent
            # server: it resumes without counting toward LOG_MAX_FAILURES (a silent
            # server fails the resume's request instead, under the retry policy).
            return False, True, cursor.stored > before or isinstance(err, Silent)
        finally:
            with self._lock:
                self._open = None
            opened.close()
        cursor.end_connection(complete=final and not self._abort.is_set())
        return final, False, cursor.stored > before


__all__ = ["LogPump", "PumpThreads", "StoredLog"]
