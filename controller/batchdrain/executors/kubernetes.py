"""The ``kubernetes`` executor: one Job per attempt, watched, logged, classified, cleaned up.

Shape of a session, and why:

* ``begin()`` starts exactly one watch for the session's Jobs and one for its Pods
  (``batchdrain.kube.watch.Reflector``: list, then watch from the resourceVersion,
  relist on 410, reconnect on drops). Events are dispatched by Job name to the
  ``_Tracker`` of the attempt waiting for them, so no attempt ever polls the API
  server, however many run at once. It also detects once whether the cluster serves
  split log streams (``stream=Stdout|Stderr``, alpha since 1.32 behind the
  ``PodLogsQuerySplitStreams`` gate).
* ``execute()`` runs on one of the drain loop's worker threads and blocks for one
  attempt: it reports the Job name *before* creating it (so a crash leaves a row that
  can be adopted), creates it paced by a shared rate limiter (AlreadyExists means a
  previous controller got there first: adopt it), streams the pod's logs while it
  runs (follow + timestamps, so a dropped connection resumes from the last timestamp
  without duplicating or losing a byte; timestamps are stripped before storing),
  classifies the end from Job conditions, pod and container states and Events, then
  deletes the Job and removes the pod's ``batchdrain.io/logs`` finalizer, in that
  order, only after the logs are stored.
* On SIGTERM (``StopSignal``) it keeps collecting until the grace deadline, then
  returns ``controller_interrupted`` and leaves the Job (and the finalizer, so the
  logs survive) for the next session's ``adopt()``.
* ``end()`` stops the watches and lists whatever of the session is still there.

Every wait has a deadline: scheduling and start timeouts from Settings, the Job's own
``activeDeadlineSeconds`` plus a margin, bounded log reconnects and joins. Keys passed
to ``on_update``: ``job_name``, ``namespace``, ``pod_name``, ``pod_uid``, ``node``,
``log_mode``.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchdrain.classify import first_error_line
from batchdrain.classify.kube import (
    KubeOutcome,
    classify_attempt,
    condition,
    container_started,
    container_times,
    image_of,
    job_outcome,
    parse_time,
    pending_outcome,
    pod_terminal,
    terminated_state,
)
from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, LogMode, LogPointer, utcnow
from batchdrain.executors.base import AttemptLaunch, AttemptUpdate, OrphanAttempt, StopSignal
from batchdrain.identity import identity_header
from batchdrain.jobspec import (
    CONTAINER,
    LABEL_ATTEMPT,
    LABEL_PHASE,
    LABEL_RUN,
    LOGS_FINALIZER,
    JobRequest,
    JobSpecBuilder,
    job_name_of_pod,
    label_value,
    session_selector,
)
from batchdrain.kube import (
    AlreadyExists,
    BadRequest,
    KubeApi,
    KubeError,
    KubeObject,
    LogStreamName,
    NotFound,
    Stream,
)
from batchdrain.kube.watch import EventHandler, ListFn, Reflector, WatchFn
from batchdrain.logstore import LogSink, LogWriter, log_key
from batchdrain.settings import Settings

# How often a waiting attempt wakes to look at its stop signal and deadlines. It reads
# only in-memory state fed by the watches; it never calls the API server.
TICK_SECONDS = 0.25
# activeDeadlineSeconds should end the Job; past it plus this, we stop waiting anyway.
DEADLINE_MARGIN_SECONDS = 60.0
# A terminated pod's Job condition (e.g. DeadlineExceeded) follows within moments.
JOB_CONDITION_GRACE_SECONDS = 5.0
LOG_JOIN_SECONDS = 30.0
LOG_MAX_FAILURES = 8
TAIL_BYTES = 64 * 1024
HEADER_END = b"[batchdrain] ================================\n"
SPLIT_STREAMS_SINCE = (1, 32)

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


# -- pacing ----------------------------------------------------------------------------


# An idle log pump thread waits this long for the next attempt's pump before it exits.
PUMP_IDLE_SECONDS = 10.0
# Session end: how long pods of deleted Jobs may take to disappear before they count as leaks.
LEAK_GRACE_SECONDS = 30.0
LEAK_POLL_SECONDS = 0.5


class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by all worker threads.

    Each caller reserves the next free slot under a lock and waits outside it, on an
    event that a stop request sets, so pacing never delays shutdown.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, *, timeout: float, cancel: threading.Event | None = None) -> bool:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            if slot - now > timeout:
                return False
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            if cancel is not None:
                return not cancel.wait(delay)
            time.sleep(delay)
        return True


# -- per-attempt view fed by the watches -------------------------------------------------


def _rv(obj: KubeObject) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _newer(old: KubeObject | None, new: KubeObject) -> bool:
    """Out-of-order copies (a GET answered after a watch event) must not win."""
    if old is None:
        return True
    old_rv, new_rv = _rv(old), _rv(new)
    return old_rv is None or new_rv is None or new_rv >= old_rv


class _Tracker:
    """The latest Job and Pods of one attempt, and a condition to wait for changes."""

    def __init__(self, job_name: str) -> None:
        self.job_name = job_name
        self.cond = threading.Condition()
        self.version = 0
        self.job: KubeObject | None = None
        self.job_gone = False
        self.pods: dict[str, KubeObject] = {}
        self.pods_gone: set[str] = set()
        self.watch_error: KubeError | None = None
        # The newest pod, recomputed only when a pod changes: the attempt and its log
        # pumps ask for it far more often than pod events arrive.
        self._current: KubeObject | None = None

    def on_job(self, kind: str, obj: KubeObject) -> None:
        with self.cond:
            if kind == "DELETED":
                self.job_gone = True
            elif _newer(self.job, obj):
                self.job = obj
            self.version += 1
            self.cond.notify_all()

    def on_pod(self, kind: str, obj: KubeObject) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        with self.cond:
            if kind == "DELETED":
                self.pods_gone.add(name)
                if name in self.pods and _newer(self.pods[name], obj) and obj.get("status"):
                    self.pods[name] = obj
                    self._current = None
            elif name not in self.pods_gone and _newer(self.pods.get(name), obj):
                self.pods[name] = obj
                self._current = None
            self.version += 1
            self.cond.notify_all()

    def poke(self) -> None:
        """Wake every waiter (an abort was requested)."""
        with self.cond:
            self.version += 1
            self.cond.notify_all()

    def fail(self, error: KubeError) -> None:
        with self.cond:
            self.watch_error = error
            self.version += 1
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self.cond:
            if self.version == seen and timeout > 0:
                self.cond.wait(timeout)
            return self.version

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def current_pod(self) -> KubeObject | None:
        with self.cond:
            if self._current is None and self.pods:
                self._current = max(
                    self.pods.values(),
                    key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
                )
            return self._current

    def container_done(self) -> bool:
        """The container has exited or the pod is gone: no more output will come."""
        with self.cond:
            pod = self.current_pod()
            if pod is None:
                return self.job_gone
            name = str((pod.get("metadata") or {}).get("name"))
            if name in self.pods_gone or pod_terminal(pod):
                return True
            state = _container_state(pod)
            return bool(state.get("terminated"))


def _clean_exit(pod: KubeObject | None) -> bool:
    """The phase container exited 0 on its own: no deletion, no disruption."""
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp") or condition(pod, "DisruptionTarget"):
        return False
    terminated = terminated_state(pod, CONTAINER) or {}
    return terminated.get("exitCode") == 0 and terminated.get("reason") == "Completed"


def _container_state(pod: KubeObject) -> KubeObject:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state: KubeObject = status.get("state") or {}
            return state
    return {}


class _Hub:
    """Routes watch events to the tracker of the attempt that owns the Job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trackers: dict[str, _Tracker] = {}
        self.failure: KubeError | None = None

    def register(self, job_name: str) -> _Tracker:
        tracker = _Tracker(job_name)
        with self._lock:
            self._trackers[job_name] = tracker
            failure = self.failure
        if failure is not None:
            tracker.fail(failure)
        return tracker

    def unregister(self, job_name: str) -> None:
        with self._lock:
            self._trackers.pop(job_name, None)

    # The watch threads look trackers up without the lock: a single dict read is atomic,
    # and taking a lock shared with every worker for each of the ~10 events of every
    # attempt made it a point of contention. ``register`` still happens before the Job
    # is created, so no event of the attempt can arrive before its tracker is there.

    def on_job(self, kind: str, obj: KubeObject) -> None:
        name = (obj.get("metadata") or {}).get("name")
        tracker = self._trackers.get(str(name))
        if tracker is not None:
            tracker.on_job(kind, obj)

    def on_pod(self, kind: str, obj: KubeObject) -> None:
        job = job_name_of_pod(obj)
        if job is None:
            return
        tracker = self._trackers.get(job)
        if tracker is not None:
            tracker.on_pod(kind, obj)

    def fail(self, error: KubeError) -> None:
        with self._lock:
            self.failure = error
            trackers = list(self._trackers.values())
        for tracker in trackers:
            tracker.fail(error)


@dataclass
class _Watches:
    """The Job and Pod reflectors of one session label, shared by its attempts."""

    jobs: Reflector
    pods: Reflector
    users: int = 0

    def stop(self) -> None:
        self.jobs.stop()
        self.pods.stop()


# -- logs ------------------------------------------------------------------------------


def _sort_key(stamp: str) -> str | None:
    """A fixed-width UTC string that sorts like the instant (RFC 3339, nanoseconds)."""
    if len(stamp) == 30 and stamp[29] == "Z" and stamp[19] == "." and stamp[10] == "T" and stamp[:4].isdigit():
        # What the kubelet sends for every line: already the key, minus the zone.
        return stamp[:29]
    match = _TS.match(stamp)
    if match is None:
        return None
    base, frac, zone = match.group(1), (match.group(2) or ""), match.group(3)
    if zone != "Z":
        moment = dt.datetime.fromisoformat(base + zone).astimezone(dt.UTC)
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac.ljust(9, '0')}"


class _Out:
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


class _LineCursor:
    """Strips kubelet timestamps and remembers exactly how far the stored log got.

    Position = (key of the last line stored, complete lines stored at that key, bytes
    of an incomplete line stored at that key). A reconnect asks for ``sinceTime`` of
    that second (the API's resolution) and skips what was already stored, including
    the stored part of a line cut mid-way, so the log has neither gaps nor repeats.
    Lines are never buffered whole: a huge line streams through in chunks.
    """

    def __init__(self, out: _Out, *, skip_content: int = 0) -> None:
        self.out = out
        self.last_key: str | None = None
        self.done_at_key = 0
        self.partial = 0
        self.skip_content = skip_content  # adoption: content bytes stored by a previous controller
        self._begin()

    def _begin(self) -> None:
        self._prefix = bytearray()
        self._in_line = False
        self._drop = False
        self._skip = 0
        self._resume_key = self.last_key
        self._resume_done = self.done_at_key
        self._resume_partial = self.partial
        self._seen_at_resume = 0
        self._pending: list[bytes] = []

    def new_connection(self) -> None:
        self._begin()

    def since_time(self) -> str | None:
        return f"{self.last_key[:19]}Z" if self.last_key else None

    def feed(self, chunk: bytes) -> None:
        # One write per chunk, not per line: lines are ~100 bytes, chunks up to 64 KiB.
        self._pending = []
        try:
            self._feed(chunk)
        finally:
            if self._pending:
                self.out.write(b"".join(self._pending))
            self._pending = []

    def _feed(self, chunk: bytes) -> None:
        i, size = 0, len(chunk)
        while i < size:
            if not self._in_line:
                space = chunk.find(b" ", i)
                if space < 0:
                    self._prefix += chunk[i:]
                    if len(self._prefix) > 64:  # not a timestamp: keep it as output
                        data, self._prefix = bytes(self._prefix), bytearray()
                        self._start_untimed(data)
                    return
                self._prefix += chunk[i:space]
                stamp = self._prefix.decode("ascii", "replace")
                self._prefix = bytearray()
                i = space + 1
                key = _sort_key(stamp)
                if key is None:
                    self._start_untimed(f"{stamp} ".encode())
                else:
                    self._start_line(key)
            newline = chunk.find(b"\n", i)
            end = size if newline < 0 else newline + 1
            self._emit(chunk[i:end])
            i = end
            if newline >= 0:
                self._end_line()

    def _start_untimed(self, data: bytes) -> None:
        self._in_line = True
        self._drop = False
        self._skip = 0
        self._emit(data)

    def _start_line(self, key: str) -> None:
        self._in_line = True
        self._drop = False
        self._skip = 0
        resume = self._resume_key
        if resume is not None and key < resume:
            self._drop = True
            return
        if resume is not None and key == resume:
            self._seen_at_resume += 1
            if self._seen_at_resume <= self._resume_done:
                self._drop = True
                return
            if self._seen_at_resume == self._resume_done + 1:
                self._skip = self._resume_partial
                self.partial = 0
        if key != self.last_key:
            self.last_key = key
            self.done_at_key = 0
            self.partial = 0

    def _emit(self, data: bytes) -> None:
        if self._drop or not data:
            return
        self.partial += len(data)
        if self._skip:
            cut = min(self._skip, len(data))
            self._skip -= cut
            data = data[cut:]
        if self.skip_content and data:
            cut = min(self.skip_content, len(data))
            self.skip_content -= cut
            data = data[cut:]
        if data:
            self._pending.append(data)

    def _end_line(self) -> None:
        if not self._drop:
            self.done_at_key += 1
            self.partial = 0
        self._in_line = False
        self._drop = False
        self._skip = 0


class _PumpThreads:
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


class _LogPump:
    """Follows one log stream of one pod until the container is done and all is read."""

    def __init__(
        self,
        api: KubeApi,
        *,
        pod: str,
        stream: LogStreamName | None,
        cursor: _LineCursor,
        tracker: _Tracker,
        abort: threading.Event,
    ) -> None:
        self._api = api
        self._pod = pod
        self._stream = stream
        self.cursor = cursor
        self._tracker = tracker
        self._abort = abort
        self._lock = threading.Lock()
        self._open: Stream[bytes] | None = None
        self._following = False
        self.error: KubeError | None = None
        self.reconnects = 0
        self._done: threading.Event | None = None

    def start(self, threads: _PumpThreads) -> None:
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
        cutting loses and repeats nothing.
        """
        with self._lock:
            opened = self._open if self._following else None
        if opened is not None:
            opened.close()

    def run(self) -> None:
        failures = 0
        while not self._abort.is_set():
            final = self._tracker.container_done()
            try:
                opened = self._api.stream_pod_log(
                    self._pod,
                    container=CONTAINER,
                    follow=not final,
                    timestamps=True,
                    since_time=self.cursor.since_time(),
                    stream=self._stream,
                )
            except NotFound as err:
                self.error = err  # the pod is gone; what was stored is all there is
                return
            except KubeError as err:
                failures += 1
                self.error = err
                if failures >= LOG_MAX_FAILURES:
                    return
                self._abort.wait(min(0.05 * 2**failures, 2.0))
                continue
            with self._lock:
                self._open = opened
                self._following = not final
            if self._abort.is_set() or (not final and self._tracker.container_done()):
                opened.close()
            self.cursor.new_connection()
            try:
                for chunk in opened:
                    self.cursor.feed(chunk)
                    failures = 0
                self.error = None
            except KubeError as err:
                # Dropped mid-stream: resume from the cursor, bounded by LOG_MAX_FAILURES.
                self.error = err
                failures += 1
                self.reconnects += 1
                if failures >= LOG_MAX_FAILURES:
                    return
                continue
            finally:
                with self._lock:
                    self._open = None
                opened.close()
            if final:
                return  # the read after termination: nothing more can come
            self.reconnects += 1
            # A follow ends when the container exits; the watch says so a moment later.
            self._tracker.wait_for(lambda: self._abort.is_set() or self._tracker.container_done(), 2.0)


# -- the executor ----------------------------------------------------------------------


@dataclass
class _Attempt:
    launch: AttemptLaunch
    job_name: str
    tracker: _Tracker
    created_at: dt.datetime
    deadline: float
    adopted: bool = False
    resume_logs: bool = False
    outs: dict[str, _Out] = field(default_factory=dict)
    pumps: list[_LogPump] = field(default_factory=list)
    abort: threading.Event = field(default_factory=threading.Event)
    reported_pod: str | None = None
    job_done_at: float | None = None
    # When we first saw the pod scheduled, by our clock: the start timeout counts from
    # here, so skew between our clock and the API server's cannot fire it early.
    scheduled_at: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)


class KubernetesExecutor:
    """``Executor`` running each attempt as a Job through a ``KubeApi`` seam."""

    name = "kubernetes"

    def __init__(
        self,
        api: KubeApi,
        settings: Settings,
        *,
        log_mode: LogMode | None = None,
        watch_timeout_seconds: int = 300,
        tick_seconds: float = TICK_SECONDS,
        job_condition_grace_seconds: float = JOB_CONDITION_GRACE_SECONDS,
    ) -> None:
        self._api = api
        self._settings = settings
        self._builder = JobSpecBuilder(settings, namespace=api.namespace)
        self._limiter = RateLimiter(settings.job_create_rate)
        self._hub = _Hub()
        self._pump_threads = _PumpThreads()
        self._forced_mode = log_mode
        self._watch_timeout = watch_timeout_seconds
        self._tick = tick_seconds
        self._grace = job_condition_grace_seconds
        self._watches: dict[str, _Watches] = {}
        self._watch_lock = threading.Lock()
        self._adopted_jobs: set[str] = set()
        self._session_id: str | None = None
        self._sink: LogSink | None = None
        self.log_mode = log_mode or LogMode.COMBINED
        self._facts: dict[str, Any] = {"executor": self.name, "namespace": api.namespace}
        # Set once the API server is out of reach past the retry budget: from then on the
        # session starts nothing new (see ``unavailable``).
        self._lost: str | None = None

    # -- session ------------------------------------------------------------------

    def begin(self, *, session_id: str, sink: LogSink) -> None:
        """Detect log streams, start the session's two watches and wait for their lists.

        Raises ``KubeError`` when the watches cannot even list: the session cannot run.
        """
        self._session_id = session_id
        self._sink = sink
        if self._forced_mode is None:
            self.log_mode, why = self._detect_log_mode()
        else:
            self.log_mode, why = self._forced_mode, "set by configuration"
        self._facts.update({"log_mode": self.log_mode.value, "log_mode_reason": why})
        self._acquire_watches(session_id)

    def unavailable(self) -> str | None:
        failure = self._hub.failure
        if failure is not None and self._lost is None:
            self._lost = f"lost the Kubernetes API: {failure.message}"
        return self._lost

    def end(self) -> list[str]:
        """Stop the watches; list Jobs and Pods of the session (and adoptions) still there."""
        with self._watch_lock:
            watches = list(self._watches.values())
            self._watches.clear()
        for pair in watches:
            pair.stop()
        leaks: list[str] = []
        if self._session_id is None:
            return leaks
        selector = session_selector(self._session_id)
        deadline = time.monotonic() + LEAK_GRACE_SECONDS
        while True:
            try:
                jobs, _ = self._api.list_jobs(selector)
                pods, _ = self._api.list_pods(selector)
            except KubeError as err:
                return [f"leak audit failed: {err.message}"]
            # Deleting a Job deletes its pods in the background: a pod that is already
            # terminating (or whose Job is gone) is on its way out, not a leak. Give the
            # garbage collector a bounded moment; anything still there then is reported.
            job_names = {str((j.get("metadata") or {}).get("name")) for j in jobs}
            settling = not jobs and all(
                (p.get("metadata") or {}).get("deletionTimestamp") or job_name_of_pod(p) not in job_names
                for p in pods
            )
            if not pods or not settling or time.monotonic() >= deadline:
                break
            time.sleep(LEAK_POLL_SECONDS)
        names = {str((j.get("metadata") or {}).get("name")) for j in jobs}
        leaks += [f"job/{n}" for n in sorted(names)]
        for leaked in jobs:
            try:
                self._api.create_event(involved={"apiVersion": "batch/v1", "kind": "Job", **leaked}, reason="Leaked",
                                       message=f"still present when session {self._session_id} ended", warning=True)
            except KubeError as err:
                name = (leaked.get("metadata") or {}).get("name")
                leaks.append(f"(event Leaked on job/{name} failed: {err.message})")
        leaks += sorted(f"pod/{(p.get('metadata') or {}).get('name')}" for p in pods)
        for job in sorted(self._adopted_jobs - names):
            try:
                self._api.get_job(job)
            except NotFound:
                continue
            except KubeError as err:
                leaks.append(f"job/{job} (unknown: {err.message})")
                continue
            leaks.append(f"job/{job}")
        return leaks

    def describe(self) -> dict[str, Any]:
        return dict(self._facts)

    # -- attempts -----------------------------------------------------------------

    def execute(self, launch: AttemptLaunch, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        try:
            return self._execute(launch, stop, on_update)
        except Exception as err:
            # Never raise to the drain loop: an executor bug is still a recorded attempt.
            return _crash_result(err)

    def adopt(self, orphan: OrphanAttempt, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        try:
            return self._adopt(orphan, stop, on_update)
        except Exception as err:
            return _crash_result(err)

    def _execute(self, launch: AttemptLaunch, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        identity = launch.identity
        name = self._builder.name(identity)
        body = self._builder.build(
            JobRequest(
                identity=identity,
                spec=launch.spec,
                command=launch.command,
                env=launch.env,
                image=launch.image,
                timeout_seconds=launch.timeout_seconds,
            )
        )
        on_update(AttemptProgress(job_name=name, namespace=self._api.namespace))
        tracker = self._hub.register(name)  # before create: no event can be missed
        try:
            if stop.stopping or not self._limiter.acquire(timeout=max(launch.timeout_seconds, 1.0), cancel=stop.event):
                return AttemptResult(
                    FailureClass.CONTROLLER_INTERRUPTED,
                    "controller stopping: the Job was not created",
                    None,
                    "the Job was never created",
                    job_name=name,
                    log_mode=self.log_mode,
                    logs=self._note_logs(launch, name, "the Job was not created: controller stopping"),
                )
            if self._lost is not None:
                # Claimed just before the API was lost: another create would only burn the
                # retry budget again. api_error is transient: a later session retries.
                return AttemptResult(
                    FailureClass.API_ERROR,
                    f"the Job was not created: {self._lost}",
                    None,
                    "the Job was never created",
                    job_name=name,
                    log_mode=self.log_mode,
                    logs=self._note_logs(launch, name, f"the Job was not created: {self._lost}"),
                )
            created_at = utcnow()
            adopted = False
            try:
                tracker.on_job("ADDED", self._api.create_job(body))
            except AlreadyExists:
                # Same deterministic name = same attempt: a previous controller created it.
                adopted = True
                existing = self._api.get_job(name)
                created_at = parse_time((existing.get("metadata") or {}).get("creationTimestamp")) or created_at
                tracker.on_job("ADDED", existing)
                self._seed_pods(tracker, launch)
            except KubeError as err:
                return self._launch_failure(launch, name, err)
            attempt = _Attempt(
                launch=launch,
                job_name=name,
                tracker=tracker,
                created_at=created_at,
                deadline=self._deadline(launch, created_at),
                adopted=adopted,
                resume_logs=adopted,
            )
            ident = launch.identity
            if adopted:
                attempt.notes.append("Job already existed: adopted")
                self._event(attempt, "Adopted", f"session {self._session_id} adopted this existing Job "
                            f"(attempt {ident.attempt} of phase {ident.phase_id!r}, run {ident.run_id!r})")
            else:
                self._event(attempt, "AttemptStarted", f"session {ident.session_id}: attempt {ident.attempt} of "
                            f"phase {ident.phase_id!r} (run {ident.run_id!r})")
            return self._supervise(attempt, stop, on_update)
        finally:
            self._hub.unregister(name)

    def _adopt(self, orphan: OrphanAttempt, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        launch = orphan.launch
        name = orphan.job_name or self._builder.name(launch.identity)
        on_update(AttemptProgress(job_name=name, namespace=self._api.namespace))
        session = launch.identity.session_id
        self._acquire_watches(session)
        tracker = self._hub.register(name)
        try:
            try:
                job = self._api.get_job(name)
            except NotFound:
                if orphan.pod_uid is None:
                    return AttemptResult(
                        FailureClass.CONTROLLER_INTERRUPTED,
                        "no Job found on adoption: the previous controller died or lost the API "
                        "before creating it",
                        None,
                        "the Job was never created",
                        job_name=name,
                        log_mode=self.log_mode,
                        logs=self._note_logs(launch, name, "adoption: no Job found"),
                    )
                return AttemptResult(
                    FailureClass.POD_DELETED,
                    "Job was gone when a new session came to adopt it (deleted or expired)",
                    None,
                    "the Job and its pod were gone before adoption",
                    job_name=name,
                    pod_uid=orphan.pod_uid,
                    log_mode=self.log_mode,
                    logs=self._note_logs(launch, name, "adoption: the Job was gone"),
                )
            except KubeError as err:
                return self._launch_failure(launch, name, err, adopting=True)
            created_at = parse_time((job.get("metadata") or {}).get("creationTimestamp")) or utcnow()
            tracker.on_job("ADDED", job)
            self._seed_pods(tracker, launch)
            self._adopted_jobs.add(name)
            attempt = _Attempt(
                launch=launch,
                job_name=name,
                tracker=tracker,
                created_at=created_at,
                deadline=self._deadline(launch, created_at),
                adopted=True,
                resume_logs=True,
                notes=[f"adopted from session {orphan.session_id}"],
            )
            self._event(attempt, "Adopted", f"session {self._session_id} adopted this Job after session "
                        f"{orphan.session_id} stopped heart-beating")
            return self._supervise(attempt, stop, on_update)
        finally:
            self._hub.unregister(name)
            self._release_watches(session)

    def _seed_pods(self, tracker: _Tracker, launch: AttemptLaunch) -> None:
        """An existing Job's pods predate our watch's events: read them once."""
        identity = launch.identity
        selector = ",".join(
            [
                session_selector(identity.session_id),
                f"{LABEL_RUN}={label_value(identity.run_id)}",
                f"{LABEL_PHASE}={label_value(identity.phase_id)}",
                f"{LABEL_ATTEMPT}={identity.attempt}",
            ]
        )
        pods, _ = self._api.list_pods(selector)
        for pod in pods:
            tracker.on_pod("ADDED", pod)

    def _deadline(self, launch: AttemptLaunch, created_at: dt.datetime) -> float:
        elapsed = (utcnow() - created_at).total_seconds()
        budget = launch.timeout_seconds + DEADLINE_MARGIN_SECONDS - max(elapsed, 0.0)
        return time.monotonic() + max(budget, 1.0)

    # -- the wait -------------------------------------------------------------------

    def _supervise(self, attempt: _Attempt, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        tracker = attempt.tracker
        settings = self._settings
        seen = -1
        outcome: KubeOutcome | None = None
        while True:
            seen = tracker.wait(seen, 0.0)
            pod = tracker.current_pod()
            if pod is not None:
                self._report_pod(attempt, pod, on_update)
                if not attempt.pumps and container_started(pod, CONTAINER):
                    self._start_logs(attempt, pod)
            if tracker.watch_error is not None:
                return self._lost_sight(attempt, tracker.watch_error)
            if self._finished(attempt, pod):
                break
            if attempt.scheduled_at is None and pod is not None and condition(pod, "PodScheduled"):
                attempt.scheduled_at = utcnow()
            if (pod is None or not container_started(pod, CONTAINER)) and self._may_give_up(attempt, pod):
                early = pending_outcome(
                    pod,
                    container=CONTAINER,
                    now=utcnow(),
                    created_at=attempt.created_at,
                    scheduled_at=attempt.scheduled_at,
                    scheduling_timeout=settings.scheduling_timeout_seconds,
                    start_timeout=settings.start_timeout_seconds,
                )
                if early is not None:
                    outcome = self._with_events(early, pod)
                    break
            now = time.monotonic()
            if stop.stopping and stop.expired():
                return self._interrupted(attempt)
            if now >= attempt.deadline:
                outcome = KubeOutcome(
                    FailureClass.DEADLINE_EXCEEDED,
                    f"no end after activeDeadlineSeconds + {DEADLINE_MARGIN_SECONDS:g}s; "
                    "the controller gave up waiting",
                    None,
                    "the controller stopped waiting for the container",
                    None,
                )
                break
            limit = attempt.deadline - now
            if stop.deadline is not None:
                limit = min(limit, stop.deadline - now)
            seen = tracker.wait(seen, max(min(self._tick, limit), 0.0))
        return self._finish(attempt, stop, outcome)

    def _may_give_up(self, attempt: _Attempt, pod: KubeObject | None) -> bool:
        """Cheap gate in front of ``pending_outcome``: a waiting reason, or time is up."""
        if pod is not None and _container_state(pod).get("waiting"):
            return True
        limit = min(self._settings.scheduling_timeout_seconds, self._settings.start_timeout_seconds)
        return (utcnow() - attempt.created_at).total_seconds() >= limit

    def _finished(self, attempt: _Attempt, pod: KubeObject | None) -> bool:
        """The attempt is over: nothing more will run (the log pumps may still be reading)."""
        tracker = attempt.tracker
        if tracker.job_gone:
            return True
        if pod is not None:
            name = str((pod.get("metadata") or {}).get("name"))
            if name in tracker.pods_gone or pod_terminal(pod) or _container_state(pod).get("terminated"):
                return True
            if (pod.get("metadata") or {}).get("deletionTimestamp") and not container_started(pod, CONTAINER):
                return True
        if job_outcome(tracker.job) is None:
            return False
        # The Job watch and the Pod watch are independent: a Job's Failed condition can
        # arrive before the pod's final state, and a killed container may still be
        # stopping. Give the pod a short grace to catch up so its last lines are read.
        now = time.monotonic()
        if attempt.job_done_at is None:
            attempt.job_done_at = now
        return now - attempt.job_done_at >= self._grace

    def _report_pod(self, attempt: _Attempt, pod: KubeObject, on_update: AttemptUpdate) -> None:
        meta = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        key = f"{meta.get('name')}/{node}"
        if attempt.reported_pod != key:
            attempt.reported_pod = key
            on_update(AttemptProgress(pod_name=meta.get("name"), pod_uid=meta.get("uid"), node=node))

    # -- logs -----------------------------------------------------------------------

    def _header(self, attempt: _Attempt, pod: KubeObject | None) -> bytes:
        image, digest = image_of(pod, CONTAINER)
        extra: dict[str, str | None] = {
            "namespace": self._api.namespace,
            "job": attempt.job_name,
            "pod": ((pod or {}).get("metadata") or {}).get("name"),
            "node": ((pod or {}).get("spec") or {}).get("nodeName"),
            "image": image or attempt.launch.image,
            "image_digest": digest,
            "log_mode": self.log_mode.value,
        }
        return identity_header(attempt.launch.identity, extra).encode("utf-8")

    def _streams(self) -> list[tuple[str, LogStreamName | None]]:
        if self.log_mode is LogMode.SPLIT:
            return [("stdout", LogStreamName.STDOUT), ("stderr", LogStreamName.STDERR)]
        return [("combined", None)]

    def _open_outs(self, attempt: _Attempt, pod: KubeObject | None) -> dict[str, int]:
        """Open the attempt's logs (header first); returns content bytes already stored."""
        assert self._sink is not None, "begin() was not called"
        identity = attempt.launch.identity
        skips: dict[str, int] = {}
        header: bytes | None = None
        for stream, _ in self._streams():
            key = log_key(identity.session_id, identity.run_id, identity.phase_id, identity.attempt, stream)
            stored = self._stored_content(key) if attempt.resume_logs else None
            writer = self._sink.open(key, stream=stream, resume=stored is not None)
            out = _Out(writer, stream)
            if stored is None:
                header = header or self._header(attempt, pod)
                out.write(header, content=False)
                skips[stream] = 0
            else:
                skips[stream] = stored
            attempt.outs[stream] = out
        return skips

    def _stored_content(self, key: str) -> int | None:
        """Phase bytes a previous controller stored under ``key`` (after its header)."""
        assert self._sink is not None
        url = f"{self._sink.location().rstrip('/')}/{key}"
        size = 0
        header_end: int | None = None
        window = b""
        try:
            for chunk in self._sink.read(url):
                if header_end is None:
                    window += chunk
                    found = window.find(HEADER_END)
                    if found >= 0:
                        header_end = size - (len(window) - len(chunk)) + found + len(HEADER_END)
                    else:
                        window = window[-len(HEADER_END) :]
                size += len(chunk)
        except (FileNotFoundError, OSError):
            return None
        if header_end is None:
            return None
        return size - header_end

    def _start_logs(self, attempt: _Attempt, pod: KubeObject) -> None:
        skips = self._open_outs(attempt, pod)
        pod_name = str((pod.get("metadata") or {}).get("name"))
        done = attempt.tracker.container_done()
        for stream, param in self._streams():
            cursor = _LineCursor(attempt.outs[stream], skip_content=skips[stream])
            pump = _LogPump(
                self._api,
                pod=pod_name,
                stream=param,
                cursor=cursor,
                tracker=attempt.tracker,
                abort=attempt.abort,
            )
            attempt.pumps.append(pump)
            if done:
                pump.run()  # already exited: one read, no thread needed
            else:
                pump.start(self._pump_threads)

    def _note_logs(self, launch: AttemptLaunch, job_name: str, note: str) -> list[LogPointer]:
        """Logs for an attempt that never ran: the identity header and why nothing follows."""
        if self._sink is None:
            return []
        attempt = _Attempt(launch, job_name, _Tracker(job_name), utcnow(), 0.0)
        self._open_outs(attempt, None)
        pointers = []
        for out in attempt.outs.values():
            out.write(f"[batchdrain] {note}\n".encode(), content=False)
            pointers.append(out.close())
        return pointers

    # -- endings --------------------------------------------------------------------

    def _join_pumps(self, attempt: _Attempt, stop: StopSignal) -> bool:
        limit = time.monotonic() + LOG_JOIN_SECONDS
        for pump in attempt.pumps:
            while True:
                until = limit if stop.deadline is None else min(limit, stop.deadline)
                if pump.join(max(min(self._tick, until - time.monotonic()), 0.0)):
                    break
                if time.monotonic() >= until:
                    return False
        return True

    def _interrupted(self, attempt: _Attempt) -> AttemptResult:
        attempt.abort.set()
        attempt.tracker.poke()
        for pump in attempt.pumps:
            pump.close()
        for pump in attempt.pumps:
            pump.join(2.0)
        pod = attempt.tracker.current_pod()
        result = self._result(
            attempt,
            KubeOutcome(
                FailureClass.CONTROLLER_INTERRUPTED,
                "controller stopped (SIGTERM) before the phase finished; grace period ended; "
                "Job left running for the next session to adopt",
                None,
                "the controller stopped before the container ended",
                None,
            ),
            pod,
        )
        result.left_running = True
        return result

    def _lost_sight(self, attempt: _Attempt, error: KubeError) -> AttemptResult:
        """The watches gave up: the Job may still run, so it is left for adoption.

        Finishing the attempt here would free the phase for a new attempt while the old
        pod might still be running; instead the attempt stays open (like a SIGTERM) and
        the next session, once this one's lease expires, adopts the Job and its logs.
        """
        attempt.abort.set()
        for pump in attempt.pumps:
            pump.close()
        for pump in attempt.pumps:
            pump.join(2.0)
        result = self._result(
            attempt,
            KubeOutcome(
                FailureClass.API_ERROR,
                f"lost the Kubernetes API (watch failed past the retry budget): {error.message}; "
                "Job left in place for the next session to adopt",
                None,
                "the controller lost sight of the pod",
                {"watch_error": error.as_status()},
            ),
            attempt.tracker.current_pod(),
        )
        result.left_running = True
        return result

    def _finish(self, attempt: _Attempt, stop: StopSignal, outcome: KubeOutcome | None) -> AttemptResult:
        tracker = attempt.tracker
        if tracker.container_done():
            for pump in attempt.pumps:
                pump.cut_follow()
        if attempt.pumps and not self._join_pumps(attempt, stop):
            if stop.stopping and stop.expired():
                return self._interrupted(attempt)
            attempt.notes.append(f"log streaming did not finish within {LOG_JOIN_SECONDS:g}s")
            attempt.abort.set()
            tracker.poke()
            for pump in attempt.pumps:
                pump.close()
        pod = tracker.current_pod()
        if outcome is None:
            # The Job's condition lags the pod by the Job controller's sync period (~1s).
            # It only changes the verdict for failures (DeadlineExceeded...); a clean exit 0
            # is a success whatever the Job says later, so it does not wait for it.
            if job_outcome(tracker.job) is None and not tracker.job_gone and not _clean_exit(pod):
                tracker.wait_for(lambda: job_outcome(tracker.job) is not None or tracker.job_gone, self._grace)
            pod = tracker.current_pod()
            outcome = self._classify(attempt, pod)
        if not attempt.outs:
            self._open_outs(attempt, pod)
            for out in attempt.outs.values():
                out.write(f"[batchdrain] no output: {outcome.message}\n".encode(), content=False)
        result = self._result(attempt, outcome, pod)
        self._event(attempt, "Classified", f"{result.failure_class.value}: {result.message}; logs: "
                    + ", ".join(p.url for p in result.logs), warning=not result.succeeded)
        cleanup = self._cleanup(attempt)
        if cleanup:
            result.raw_status = {**(result.raw_status or {}), "cleanup_errors": cleanup}
        return result

    def _classify(self, attempt: _Attempt, pod: KubeObject | None) -> KubeOutcome:
        tracker = attempt.tracker
        pod_name = str(((pod or {}).get("metadata") or {}).get("name"))
        memory = attempt.launch.spec.memory or self._settings.memory_limit
        outcome = classify_attempt(
            job=tracker.job,
            pod=pod,
            container=CONTAINER,
            memory_limited=bool(memory),
            pod_gone=pod is not None and pod_name in tracker.pods_gone,
            job_gone=tracker.job_gone,
        )
        if outcome.failure_class in (FailureClass.SUCCEEDED, FailureClass.EXIT_CODE):
            return outcome
        return self._with_events(outcome, pod, classify=True, attempt=attempt)

    def _with_events(
        self,
        outcome: KubeOutcome,
        pod: KubeObject | None,
        *,
        classify: bool = False,
        attempt: _Attempt | None = None,
    ) -> KubeOutcome:
        """Re-derive the outcome with the pod's Events: they say why (FailedScheduling...)."""
        if pod is None:
            return outcome
        meta = pod.get("metadata") or {}
        try:
            events = self._api.list_events(name=str(meta.get("name")), uid=meta.get("uid"))
        except KubeError as err:
            raw = {**(outcome.raw_status or {}), "events_error": err.as_status()}
            return KubeOutcome(outcome.failure_class, outcome.message, outcome.exit_code, outcome.exit_code_reason, raw)
        if classify and attempt is not None:
            tracker = attempt.tracker
            name = str(meta.get("name"))
            memory = attempt.launch.spec.memory or self._settings.memory_limit
            return classify_attempt(
                job=tracker.job,
                pod=pod,
                events=events,
                container=CONTAINER,
                memory_limited=bool(memory),
                pod_gone=name in tracker.pods_gone,
                job_gone=tracker.job_gone,
            )
        return (
            pending_outcome(
                pod,
                container=CONTAINER,
                now=utcnow() + dt.timedelta(days=3650),  # already decided: only enrich it
                created_at=utcnow(),
                scheduling_timeout=self._settings.scheduling_timeout_seconds,
                start_timeout=self._settings.start_timeout_seconds,
                events=events,
            )
            or outcome
        )

    def _result(self, attempt: _Attempt, outcome: KubeOutcome, pod: KubeObject | None) -> AttemptResult:
        now = utcnow()
        started, finished = container_times(pod, CONTAINER)
        image, digest = image_of(pod, CONTAINER)
        pointers = [out.close() for out in attempt.outs.values()]
        error_line = self._error_line(attempt)
        message = outcome.message
        if error_line and outcome.failure_class is not FailureClass.SUCCEEDED:
            message = f"{message}: {error_line}"
        raw = outcome.raw_status
        notes = list(attempt.notes)
        notes += [f"log {p.cursor.out.stream}: {p.error.message}" for p in attempt.pumps if p.error]
        if notes:
            raw = {**(raw or {}), "notes": notes}
        meta = (pod or {}).get("metadata") or {}
        end = finished or now
        return AttemptResult(
            failure_class=outcome.failure_class,
            message=message,
            exit_code=outcome.exit_code,
            exit_code_reason=outcome.exit_code_reason,
            started_at=started,
            finished_at=end,
            created_at=attempt.created_at,
            container_seconds=(end - started).total_seconds() if started else None,
            total_seconds=max((now - attempt.created_at).total_seconds(), 0.0),
            first_error_line=error_line,
            logs=pointers,
            log_mode=self.log_mode,
            job_name=attempt.job_name,
            pod_names=sorted(attempt.tracker.pods),
            pod_uid=meta.get("uid"),
            node=(pod or {}).get("spec", {}).get("nodeName"),
            image=image or attempt.launch.image,
            image_digest=digest,
            raw_status=raw,
        )

    def _error_line(self, attempt: _Attempt) -> str | None:
        for stream in ("stderr", "combined", "stdout"):
            out = attempt.outs.get(stream)
            if out is not None and out.content_bytes:
                line = first_error_line(bytes(out.tail).decode("utf-8", "replace"))
                if line:
                    return line
        return None

    def _event(self, attempt: _Attempt, reason: str, message: str, *, warning: bool = False) -> None:
        """Tell the Job's story in its Events; a failure to do so is noted on the attempt."""
        job = attempt.tracker.job or {"metadata": {"name": attempt.job_name}}
        try:
            self._api.create_event(involved={"apiVersion": "batch/v1", "kind": "Job", **job}, reason=reason,
                                   message=message, warning=warning)
        except KubeError as err:
            attempt.notes.append(f"event {reason} not recorded: {type(err).__name__}: {err.message}")

    def _cleanup(self, attempt: _Attempt) -> list[dict[str, Any]]:
        """Delete the Job, then let its pods go: only ever after the logs are closed."""
        errors: list[dict[str, Any]] = []
        try:
            self._api.delete_job(attempt.job_name, propagation="Background")
        except NotFound:
            pass
        except KubeError as err:
            errors.append({"op": "delete_job", **err.as_status()})
        for name in sorted(attempt.tracker.pods):
            if name in attempt.tracker.pods_gone:
                continue
            try:
                self._api.remove_pod_finalizer(name, LOGS_FINALIZER)
            except NotFound:
                pass
            except KubeError as err:
                errors.append({"op": "remove_pod_finalizer", "pod": name, **err.as_status()})
        return errors

    def _launch_failure(
        self, launch: AttemptLaunch, name: str, err: KubeError, *, adopting: bool = False
    ) -> AttemptResult:
        # Transient trouble that outlived the retry policy is api_error (retry later);
        # a request the server refuses (RBAC, validation) will fail the same way again.
        klass = FailureClass.API_ERROR if err.retriable or err.status == 410 else FailureClass.LAUNCH_ERROR
        verb = "reading" if adopting else "creating"
        message = f"{verb} the Job failed: {type(err).__name__} ({err.status}): {err.message}"
        unsure = klass is FailureClass.API_ERROR
        if unsure:
            self._lost = f"lost the Kubernetes API: {message}"
            # A create whose answer never came may still have made the Job: the attempt
            # stays open so the next session looks for it by its deterministic name.
            message += "; left for the next session to check for the Job"
        result = AttemptResult(
            klass,
            message,
            None,
            "the Job could not be read" if adopting else
            ("the Job may not exist" if unsure else "the Job was never created"),
            job_name=name,
            log_mode=self.log_mode,
            raw_status={"api_error": err.as_status()},
            logs=self._note_logs(launch, name, message),
        )
        result.left_running = unsure
        return result

    # -- watches and capabilities ----------------------------------------------------

    def _reflector(
        self, kind: str, selector: str, list_fn: ListFn, watch_fn: WatchFn, on_event: EventHandler
    ) -> Reflector:
        """One list+watch of the session's objects of ``kind``, feeding the shared hub."""
        return Reflector(
            kind=kind,
            label_selector=selector,
            list_fn=list_fn,
            watch_fn=watch_fn,
            on_event=on_event,
            on_failure=self._hub.fail,
            failure_budget_seconds=self._settings.retry_max_seconds * 2,
            watch_timeout_seconds=self._watch_timeout,
        )

    def _acquire_watches(self, session_id: str) -> None:
        with self._watch_lock:
            pair = self._watches.get(session_id)
            if pair is None:
                selector = session_selector(session_id)
                pair = _Watches(
                    jobs=self._reflector("jobs", selector, self._api.list_jobs, self._api.watch_jobs,
                                         self._hub.on_job),
                    pods=self._reflector("pods", selector, self._api.list_pods, self._api.watch_pods,
                                         self._hub.on_pod),
                )
                self._watches[session_id] = pair
                pair.jobs.start()
                pair.pods.start()
            pair.users += 1
        limit = self._settings.retry_max_seconds * 2 + 5.0
        for reflector in (pair.jobs, pair.pods):
            if not reflector.wait_synced(limit):
                raise reflector.failed or KubeError(f"the {reflector.kind} watch did not list within {limit:g}s")

    def _release_watches(self, session_id: str) -> None:
        if session_id == self._session_id:
            return  # the session's own watches live until end()
        with self._watch_lock:
            pair = self._watches.get(session_id)
            if pair is None:
                return
            pair.users -= 1
            if pair.users > 0:
                return
            del self._watches[session_id]
        pair.stop()

    def _detect_log_mode(self) -> tuple[LogMode, str]:
        """Split streams when the API server validates ``stream``; combined otherwise.

        A log request for a pod that does not exist tells, without needing a pod:
        with ``PodLogsQuerySplitStreams`` on, ``stream=Stderr`` plus ``tailLines`` is
        refused as Invalid (422: the two are mutually exclusive) before the pod is
        looked up; with the gate off, a ``stream`` is either refused outright or
        silently dropped, and then the answer is NotFound (404).
        """
        try:
            version = self._api.server_version()
        except KubeError as err:
            return LogMode.COMBINED, f"server version unknown ({err.message})"
        self._facts["server_version"] = version.get("gitVersion")
        try:
            major = int(re.sub(r"\D", "", version.get("major", "0")) or 0)
            minor = int(re.sub(r"\D", "", version.get("minor", "0")) or 0)
        except ValueError:
            major, minor = 0, 0
        if (major, minor) < SPLIT_STREAMS_SINCE:
            return LogMode.COMBINED, f"server {major}.{minor} predates split log streams"
        probe = f"batchdrain-probe-{uuid.uuid4().hex[:12]}"
        for tail, if_refused, if_missing in (
            (None, "stream parameter refused", None),
            (1, None, "stream parameter ignored by the server"),
        ):
            try:
                self._api.stream_pod_log(
                    probe,
                    container=None,
                    follow=False,
                    timestamps=False,
                    stream=LogStreamName.STDERR,
                    tail_lines=tail,
                ).close()
            except BadRequest:
                if if_refused is not None:
                    return LogMode.COMBINED, if_refused
                return LogMode.SPLIT, "server validates the stream parameter"
            except NotFound:
                if if_missing is not None:
                    return LogMode.COMBINED, if_missing
            except KubeError as err:
                return LogMode.COMBINED, f"probe failed: {err.message}"
        return LogMode.COMBINED, "probe inconclusive"


def _crash_result(err: Exception) -> AttemptResult:
    return AttemptResult(
        FailureClass.API_ERROR,
        f"executor error: {type(err).__name__}: {err}",
        None,
        "the executor failed while handling the attempt",
        raw_status={"exception": traceback.format_exception(err)[-5:]},
    )
