"""An attempt's stored logs: opened with the identity header (or resumed), followed, closed.

A resumed log (an adopted attempt) continues after the bytes a previous controller
stored, under today's key or the key older versions used; a store that cannot be read
then is an error (``LogStoreUnreadable``), never a fresh open that would truncate it.
A split log resumes only after the kubelet re-sent those same bytes (their sha256 is
read back from the store), so an adopted log cannot go on from the wrong place.

Split logs are read without timestamps (``ByteCursor``), the combined log with them
(``LineCursor``): ``cursor``'s docstring says why each framing needs its own.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from batchdrain.classify import first_error_line
from batchdrain.classify.kube import image_of
from batchdrain.domain import LogMode, LogPointer, utcnow
from batchdrain.executors.base import AttemptLaunch, StopSignal
from batchdrain.executors.kubernetes.cursor import ByteCursor, LineCursor, LogCursor
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.executors.kubernetes.logs import LogPump, PumpThreads, StoredLog
from batchdrain.executors.kubernetes.watches import Tracker, object_name
from batchdrain.identity import identity_header
from batchdrain.jobspec import CONTAINER
from batchdrain.kube import KubeApi, KubeObject, LogStreamName
from batchdrain.logstore import HEADER_END, LogSink, LogStoreUnreadable, legacy_log_key, log_key, stored_content

LOG_JOIN_SECONDS = 30.0


@dataclass(frozen=True)
class Stored:
    """What a previous controller stored of one log: content bytes and (split) their sha256."""

    content: int = 0
    digest: hashlib._Hash | None = None


class LogBook:
    """Opens, follows and closes the stored logs of the executor's attempts."""

    def __init__(self, api: KubeApi, *, threads: PumpThreads | None = None) -> None:
        self._api = api
        self._threads = threads or PumpThreads()
        self.sink: LogSink | None = None
        self.mode = LogMode.COMBINED

    def streams(self) -> list[tuple[str, LogStreamName | None]]:
        if self.mode is LogMode.SPLIT:
            return [("stdout", LogStreamName.STDOUT), ("stderr", LogStreamName.STDERR)]
        return [("combined", None)]

    def header(self, attempt: LiveAttempt, pod: KubeObject | None) -> bytes:
        image, digest = image_of(pod, CONTAINER)
        extra: dict[str, str | None] = {
            "namespace": self._api.namespace,
            "job": attempt.job_name,
            "pod": ((pod or {}).get("metadata") or {}).get("name"),
            "node": ((pod or {}).get("spec") or {}).get("nodeName"),
            "image": image or attempt.launch.image,
            "image_digest": digest,
            "log_mode": self.mode.value,
        }
        return identity_header(attempt.launch.identity, extra).encode("utf-8")

    def open(self, attempt: LiveAttempt, pod: KubeObject | None) -> dict[str, Stored]:
        """Open the attempt's logs (header first); returns what was stored already, per stream.

        Raises ``LogStoreUnreadable`` when resuming and the store cannot be read: a
        fresh open would truncate what the previous controller stored.
        """
        assert self.sink is not None, "begin() was not called"
        identity = attempt.launch.identity
        skips: dict[str, Stored] = {}
        header: bytes | None = None
        for stream, _ in self.streams():
            key = log_key(identity.session_id, identity.run_id, identity.phase_id, identity.attempt, stream)
            stored: int | None = None
            if attempt.resume_logs:
                key, stored = self._resumable(key, legacy_log_key(
                    identity.session_id, identity.run_id, identity.phase_id, identity.attempt, stream))
            split = self.mode is LogMode.SPLIT
            skips[stream] = Stored(stored or 0, self._stored_digest(key, stored) if stored and split else None)
            writer = self.sink.open(key, stream=stream, resume=stored is not None)
            out = StoredLog(writer, stream)
            if stored is None:
                header = header or self.header(attempt, pod)
                out.write(header, content=False)
            attempt.outs[stream] = out
        return skips

    def _resumable(self, key: str, legacy: str) -> tuple[str, int | None]:
        """Where a previous controller stored this log (today's key, else the old one)."""
        assert self.sink is not None
        stored = stored_content(self.sink, key)
        if stored is None and legacy != key:
            old = stored_content(self.sink, legacy)
            if old is not None:
                return legacy, old
        return key, stored

    def start(self, attempt: LiveAttempt, pod: KubeObject) -> None:
        skips = self.open(attempt, pod)
        name = object_name(pod)
        done = attempt.tracker.container_done()
        for stream, param in self.streams():
            out = attempt.outs[stream]
            pump = LogPump(self._api, pod=name, stream=param, cursor=self._cursor(out, skips[stream]),
                           out=out, tracker=attempt.tracker, abort=attempt.abort)
            attempt.pumps.append(pump)
            if done:
                pump.run()  # already exited: one read, no thread needed
            else:
                pump.start(self._threads)

    def _cursor(self, out: StoredLog, stored: Stored) -> LogCursor:
        if self.mode is LogMode.SPLIT:
            return ByteCursor(out, skip_content=stored.content, stored_digest=stored.digest)
        return LineCursor(out, skip_content=stored.content)

    def _stored_digest(self, key: str, content: int) -> hashlib._Hash | None:
        """sha256 of the ``content`` bytes stored under ``key``; None if they changed since."""
        assert self.sink is not None
        digest, window, size = hashlib.sha256(), b"", 0
        header = False
        try:
            for chunk in self.sink.read(self.sink.url_for(key)):
                data = chunk
                if not header:
                    window += chunk
                    found = window.find(HEADER_END)
                    if found < 0:
                        window = window[-len(HEADER_END):]
                        continue
                    header, data = True, window[found + len(HEADER_END):]
                digest.update(data)
                size += len(data)
        except OSError as err:
            raise LogStoreUnreadable(err.errno, f"cannot read the stored log {key}: {err}") from err
        return digest if header and size == content else None

    def note_only(self, launch: AttemptLaunch, job_name: str, note: str) -> list[LogPointer]:
        """Logs for an attempt that never ran: the identity header and why nothing follows."""
        if self.sink is None:
            return []
        attempt = LiveAttempt(launch, job_name, Tracker(job_name), utcnow(), 0.0)
        self.open(attempt, None)
        pointers = []
        for out in attempt.outs.values():
            out.write(f"[batchdrain] {note}\n".encode(), content=False)
            pointers.append(out.close())
        return pointers

    @staticmethod
    def join(attempt: LiveAttempt, stop: StopSignal, *, tick: float) -> bool:
        limit = time.monotonic() + LOG_JOIN_SECONDS
        for pump in attempt.pumps:
            while True:
                until = limit if stop.deadline is None else min(limit, stop.deadline)
                if pump.join(max(min(tick, until - time.monotonic()), 0.0)):
                    break
                if time.monotonic() >= until:
                    return False
        return True

    @staticmethod
    def abort(attempt: LiveAttempt, *, join_seconds: float | None = 2.0) -> None:
        """Stop the attempt's pumps (closing their streams); wait a moment for them."""
        attempt.abort.set()
        attempt.tracker.poke()
        for pump in attempt.pumps:
            pump.close()
        if join_seconds is not None:
            for pump in attempt.pumps:
                pump.join(join_seconds)

    @staticmethod
    def error_line(attempt: LiveAttempt) -> str | None:
        for stream in ("stderr", "combined", "stdout"):
            out = attempt.outs.get(stream)
            if out is not None and out.content_bytes:
                line = first_error_line(bytes(out.tail).decode("utf-8", "replace"))
                if line:
                    return line
        return None


__all__ = ["LOG_JOIN_SECONDS", "LogBook", "LogStoreUnreadable"]
