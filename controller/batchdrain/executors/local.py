"""The ``local`` executor: one subprocess per attempt, with the same identity, logs and records.

It is the embedded default for a first run without a cluster, and the reference for
what the Kubernetes executor must record. stdout and stderr are copied chunk by chunk
into the ``LogSink`` by two threads per attempt, so output is durable as soon as it is
printed and memory stays flat whatever the phase prints. Running out of descriptors or
processes while starting one is the controller's failure (``resources.exhausted``).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchdrain.classify import classify_process_exit, first_error_line
from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, LogMode, utcnow
from batchdrain.executors.base import AttemptLaunch, AttemptUpdate, OrphanAttempt, StopSignal, store_failure
from batchdrain.executors.resources import exhausted
from batchdrain.identity import identity_header
from batchdrain.logstore import CHUNK, LogSink, LogStoreError, LogWriter, log_key

HEAD_BYTES = 16 * 1024
TAIL_BYTES = 64 * 1024
KILL_GRACE_SECONDS = 3.0
PUMP_JOIN_SECONDS = 10.0
POLL_SECONDS = 0.05


class _Pump(threading.Thread):
    """Copies one pipe into one log, keeping only a head and a tail for error lines."""

    def __init__(self, fd: int, writer: LogWriter) -> None:
        super().__init__(daemon=True)
        self._fd = fd
        self._writer = writer
        self._lock = threading.Lock()
        self._detached = False
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while chunk := os.read(self._fd, CHUNK):
                with self._lock:
                    if self._detached:
                        return
                    self._writer.write(chunk)
                self.total += len(chunk)
                if len(self.head) < HEAD_BYTES:
                    self.head += chunk[: HEAD_BYTES - len(self.head)]
                self.tail += chunk
                if len(self.tail) > TAIL_BYTES:
                    del self.tail[: len(self.tail) - TAIL_BYTES]
        except OSError as err:
            self.error = err

    @property
    def stalled(self) -> bool:
        return self._writer.stalled

    def detach(self) -> None:
        """Stop writing to the log even if the pipe stays open (a child escaped the group)."""
        with self._lock:
            self._detached = True

    def text(self) -> str:
        data = bytes(self.tail) if self.total <= TAIL_BYTES else bytes(self.head) + b"\n" + bytes(self.tail)
        return data.decode("utf-8", errors="replace")


def _store_failed(pumps: Mapping[str, _Pump]) -> LogStoreError | None:
    return next((p.error for p in pumps.values() if isinstance(p.error, LogStoreError)), None)


class LocalExecutor:
    name = "local"

    def __init__(self, *, base_env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._cwd = cwd
        self._sink: LogSink | None = None
        self._session_id = ""
        self._host = socket.gethostname()

    def begin(self, *, session_id: str, sink: LogSink) -> None:
        self._sink = sink
        self._session_id = session_id

    def left_for_adoption(self) -> list[str]:
        return []  # its processes die with the controller's session: nothing is left

    def holder_pod_gone(self, namespace: str, name: str) -> bool | None:
        return None  # no cluster: a controller's pod cannot be looked up

    def describe(self) -> dict[str, Any]:
        return {"executor": "local", "host": self._host, "pid": os.getpid(), "cwd": self._cwd or os.getcwd()}

    def unavailable(self) -> str | None:
        return None  # the local machine cannot be lost while this process runs on it

    def end(self) -> list[str]:
        # Every attempt waits for its process group, so nothing of ours outlives a session.
        return []

    def _open_logs(self, launch: AttemptLaunch, *, resume: bool) -> dict[str, LogWriter]:
        assert self._sink is not None, "begin() must be called first"
        ident = launch.identity
        writers: dict[str, LogWriter] = {}
        try:
            for stream in ("stdout", "stderr"):
                writers[stream] = self._sink.open(
                    log_key(ident.session_id, ident.run_id, ident.phase_id, ident.attempt, stream),
                    stream=stream, resume=resume)
        except BaseException:
            for writer in writers.values():  # the one opened is not left open behind the error
                writer.close()
            raise
        return writers

    def execute(self, launch: AttemptLaunch, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        """Run the attempt; a log store that fails under it stops the process and halts the session.

        The process cannot outlive this controller, so nothing is left running: the attempt
        ends ``api_error``, charged to nothing, and the phase goes back as it was.
        """
        try:
            return self._execute(launch, stop, on_update)
        except LogStoreError as err:
            return store_failure(err)

    def _execute(self, launch: AttemptLaunch, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        created = utcnow()
        writers = self._open_logs(launch, resume=False)
        header = identity_header(
            launch.identity,
            {"executor": "local", "host": self._host, "image": "(host)",
             "command": " ".join(launch.command)},
        ).encode("utf-8")
        for writer in writers.values():
            writer.write(header)

        t0 = time.monotonic()
        spawned = self._spawn(launch, writers, created=created, t0=t0)
        if isinstance(spawned, AttemptResult):
            return spawned
        proc = spawned
        started = utcnow()
        on_update(AttemptProgress(started_at=started, node=self._host, pid=proc.pid, host=self._host))
        pumps = self._start_pumps(proc, writers)
        if isinstance(pumps, str):
            return self._not_started(writers, pumps, created=created, t0=t0)
        timed_out, interrupted = self._wait(proc, pumps, deadline=t0 + launch.timeout_seconds, stop=stop)
        returncode = proc.returncode
        finished = utcnow()
        container_seconds = time.monotonic() - t0

        notes: list[str] = []
        self._drain_pumps(proc, pumps, notes)
        failed = _store_failed(pumps)
        if failed is not None:
            raise failed
        pointers = [writer.close() for writer in writers.values()]

        error_line = first_error_line(pumps["stderr"].text()) or first_error_line(pumps["stdout"].text())
        cls, message, code, code_reason = classify_process_exit(
            returncode, timed_out=timed_out, timeout_seconds=launch.timeout_seconds,
            interrupted=interrupted, launch_error=None, error_line=error_line)
        if notes:
            message = f"{message} [{'; '.join(notes)}]"
        return AttemptResult(
            failure_class=cls, message=message, exit_code=code, exit_code_reason=code_reason,
            created_at=created, started_at=started, finished_at=finished,
            container_seconds=container_seconds, total_seconds=time.monotonic() - t0,
            first_error_line=error_line, logs=pointers, log_mode=LogMode.SPLIT,
            node=self._host, image="(host)", raw_status={"pid": proc.pid, "host": self._host,
                                                        "returncode": returncode})

    def _spawn(self, launch: AttemptLaunch, writers: dict[str, LogWriter], *, created: dt.datetime,
               t0: float) -> subprocess.Popen[bytes] | AttemptResult:
        """The phase's process, or the result of an attempt that could not start."""
        env = {**self._base_env, **dict(launch.env)}
        try:
            return subprocess.Popen(
                list(launch.command), env=env, cwd=self._cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except (OSError, ValueError) as err:
            halt = exhausted(err)
            if halt:
                return self._not_started(writers, halt, created=created, t0=t0)
            reason = f"{getattr(err, 'strerror', None) or err}: {launch.command[0]!r}"
            for writer in writers.values():
                writer.write(f"[batchdrain] launch failed: {reason}\n".encode())
            pointers = [w.close() for w in writers.values()]
            cls, message, code, code_reason = classify_process_exit(
                None, timed_out=False, timeout_seconds=launch.timeout_seconds, interrupted=False,
                launch_error=reason, error_line=None)
            return AttemptResult(
                failure_class=cls, message=message, exit_code=code, exit_code_reason=code_reason,
                created_at=created, started_at=None, finished_at=utcnow(), container_seconds=None,
                total_seconds=time.monotonic() - t0, logs=pointers, log_mode=LogMode.SPLIT,
                node=self._host, image="(host)")

    def _start_pumps(self, proc: subprocess.Popen[bytes],
                     writers: dict[str, LogWriter]) -> dict[str, _Pump] | str:
        """The two pump threads; or, when no thread can start, the phase stopped and why."""
        assert proc.stdout is not None and proc.stderr is not None
        pumps = {
            "stdout": _Pump(proc.stdout.fileno(), writers["stdout"]),
            "stderr": _Pump(proc.stderr.fileno(), writers["stderr"]),
        }
        try:
            for pump in pumps.values():
                pump.start()
        except RuntimeError as err:
            halt = exhausted(err)
            if not halt:
                raise
            # Without its pumps the phase would block on a full pipe: stop it, uncharged.
            self._kill_group(proc)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            return halt
        return pumps

    def _wait(self, proc: subprocess.Popen[bytes], pumps: Mapping[str, _Pump], *, deadline: float,
              stop: StopSignal) -> tuple[bool, bool]:
        """Until the process ends: (killed for its timeout, killed for the stop's grace)."""
        timed_out = interrupted = False
        while proc.poll() is None:
            now = time.monotonic()
            if _store_failed(pumps) is not None:
                self._kill_group(proc)  # its output has nowhere to go
            elif stop.stopping and stop.expired():
                interrupted = True
                self._kill_group(proc)
            elif now >= deadline:
                timed_out = True
                self._kill_group(proc)
            else:
                wake = min(deadline, stop.deadline or deadline, now + 0.5)
                try:
                    proc.wait(timeout=max(POLL_SECONDS, wake - now))
                except subprocess.TimeoutExpired:
                    continue
        return timed_out, interrupted

    def _not_started(self, writers: dict[str, LogWriter], halt: str, *, created: dt.datetime,
                     t0: float) -> AttemptResult:
        """The controller ran out of a resource before the phase could run: the attempt is
        the controller's failure (not charged, the session halts), never a ``launch_error``."""
        for writer in writers.values():
            writer.write(f"[batchdrain] not started: {halt}\n".encode())
        pointers = [w.close() for w in writers.values()]
        return AttemptResult(
            failure_class=FailureClass.CONTROLLER_INTERRUPTED, message=halt, exit_code=None,
            exit_code_reason="the controller could not start the process", created_at=created,
            finished_at=utcnow(), total_seconds=time.monotonic() - t0, logs=pointers, log_mode=LogMode.SPLIT,
            node=self._host, image="(host)", halt=halt, charged=False)

    def _drain_pumps(self, proc: subprocess.Popen[bytes], pumps: dict[str, _Pump],
                     notes: list[str]) -> None:
        """Wait for the pipes to close; children left behind by the phase are stopped."""
        for pump in pumps.values():
            pump.join(PUMP_JOIN_SECONDS / 5)
            # A pump waiting for space on the log volume is not a pipe held open by
            # children: it ends within the sink's own bound, so wait for it.
            while pump.is_alive() and pump.stalled:
                pump.join(POLL_SECONDS)
        if any(p.is_alive() for p in pumps.values()):
            notes.append("children of the phase kept its output open after it exited; stopped them")
            self._kill_group(proc)
        for stream, pump in pumps.items():
            pump.join(PUMP_JOIN_SECONDS)
            if pump.is_alive():
                pump.detach()
                notes.append(f"{stream} still held open by a process outside the phase's group")
            if pump.error is not None:
                notes.append(f"{stream} read error: {pump.error}")
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after a short grace."""
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, KILL_GRACE_SECONDS)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def adopt(self, orphan: OrphanAttempt, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        """A dead controller's subprocess cannot be re-attached: stop it and close its record."""
        ident = orphan.launch.identity
        note = f"controller of session {orphan.session_id} died before this attempt finished"
        stopped = self._stop_orphan_process(orphan)
        if stopped:
            note += f"; its process {stopped} was still running and was stopped"
        try:
            writers = self._open_logs(orphan.launch, resume=True)
            for writer in writers.values():
                writer.write(f"\n[batchdrain] {note} (closed by session {self._session_id})\n".encode())
            pointers = [w.close() for w in writers.values()]
        except LogStoreError as err:
            return store_failure(err)
        return AttemptResult(
            failure_class=FailureClass.CONTROLLER_INTERRUPTED, message=note, exit_code=None,
            exit_code_reason="the controller died before the process exit status was read",
            finished_at=utcnow(), logs=pointers, log_mode=LogMode.SPLIT, node=self._host,
            raw_status={"adopted_by": self._session_id, "run": ident.run_id, "phase": ident.phase_id})

    def _stop_orphan_process(self, orphan: OrphanAttempt) -> str | None:
        pid = orphan.pid
        if pid is None or orphan.host != self._host:
            return None
        marker = f"{orphan.launch.identity.session_id}".encode()
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return None
        if marker not in environ:  # the pid was reused by an unrelated process
            return None
        try:
            os.killpg(pid, signal.SIGTERM)
            time.sleep(KILL_GRACE_SECONDS)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return f"pid {pid}"
