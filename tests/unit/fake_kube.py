"""In-memory ``KubeApi`` with watch semantics and a scripted kubelet, for unit tests.

It reproduces what the executor depends on, not all of Kubernetes: resourceVersions
that grow with every change, list + watch from a version, BOOKMARKs, 410 Gone when a
version has been compacted away (or on demand, mid-watch), dropped connections, pod
logs with RFC 3339 nanosecond timestamps, ``sinceTime`` at one-second resolution,
``stream=Stdout|Stderr`` when split streams are "enabled" (refused as the API server
does when they are not), faults (429 with Retry-After, 500...) injected per operation,
and a Job controller + kubelet driven by a script per pod.

Objects handed out are never mutated afterwards (every change builds a new dict), so
the fake can share them with the code under test without copying.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from batchdrain.classify.queued import KUEUE_STOPPING
from batchdrain.kube import (
    AlreadyExists,
    BadRequest,
    Gone,
    Invalid,
    KubeObject,
    LogStreamName,
    NotFound,
    ServerError,
    TooManyRequests,
    Unreachable,
    WatchEvent,
)

BASE_TIME = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def stamp(moment: dt.datetime, nanos: int = 0) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed, as Go's RFC3339Nano prints."""
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{moment.microsecond * 1000 + nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def seconds(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the kubelet script ----------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    node: str = "node-1"


@dataclass(frozen=True)
class Unschedulable:
    message: str = "0/3 nodes are available: 3 Insufficient memory."


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Start:
    image_id: str = "docker.io/library/python@sha256:" + "ab" * 32


@dataclass(frozen=True)
class Out:
    data: bytes
    stream: str = "stdout"
    same_time: bool = False  # reuse the previous line's timestamp (equal timestamps happen)


def Err(data: bytes) -> Out:
    return Out(data, "stderr")


@dataclass(frozen=True)
class Exit:
    code: int
    reason: str | None = None
    message: str | None = None  # the termination message (FallbackToLogsOnError: the log's tail)


@dataclass(frozen=True)
class Evict:
    message: str = "The node was low on resource: memory."
    via_api: bool = False


@dataclass(frozen=True)
class DeletePod:
    pass


@dataclass(frozen=True)
class NodeLost:
    pass


@dataclass(frozen=True)
class Deadline:
    pass


@dataclass(frozen=True)
class Gate:
    """Pause the script (in a thread) until the test sets the event."""

    event: threading.Event


@dataclass(frozen=True)
class Hang:
    """Stop the script here: the container keeps running until the Job is deleted."""


Step = Schedule | Unschedulable | Waiting | Start | Out | Exit | Evict | DeletePod | NodeLost | Deadline | Gate | Hang

DEFAULT_SCRIPT: tuple[Step, ...] = (Schedule(), Start(), Out(b"hello\n"), Exit(0))


# -- streams ---------------------------------------------------------------------------


@dataclass
class _Fault:
    error: Exception  # a KubeError, or what a bug below the seam would raise
    times: int


class _WatchStream:
    def __init__(self, fake: FakeKube, kind: str, selector: dict[str, str], rv: int, timeout: float) -> None:
        self._fake = fake
        self._kind = kind
        self._selector = selector
        self._rv = rv
        self._timeout = timeout
        self.closed = False
        self.expire = False
        self.drop = False

    def close(self) -> None:
        with self._fake.cond:
            self.closed = True
            self._fake.cond.notify_all()

    def __iter__(self) -> Iterator[WatchEvent]:
        fake = self._fake
        deadline = fake.clock() + self._timeout
        try:
            with fake.cond:
                index = fake.start_index(self._rv)
                if index is None:
                    raise Gone(f"too old resource version: {self._rv}", status=410, reason="Expired")
            while True:
                with fake.cond:
                    found = self._wait_for_batch(index, deadline)
                if found is None:
                    return
                batch, index = found
                for rv, kind, obj in batch:
                    self._rv = rv
                    yield kind, obj
        finally:
            with fake.cond:
                fake.watches.discard(self)

    def _wait_for_batch(
        self, index: int, deadline: float
    ) -> tuple[list[tuple[int, str, KubeObject]], int] | None:
        """The next events from ``index`` and the index after them; None when the watch ends.

        Called with the fake's condition held; raises as the API server ends a watch.
        """
        fake = self._fake
        while True:
            if self.closed:
                return None
            if self.expire:
                raise Gone("watch expired", status=410, reason="Expired")
            if self.drop:
                raise Unreachable("connection reset by peer")
            found = fake.events_from(index, self._kind, self._selector)
            if found is None:
                raise Gone(f"too old resource version: {self._rv}", status=410)
            batch, index = found
            if batch:
                return batch, index
            remaining = deadline - fake.clock()
            if remaining <= 0:
                return None
            fake.cond.wait(min(remaining, 0.5))


class _LogStream:
    def __init__(
        self,
        fake: FakeKube,
        pod: str,
        *,
        follow: bool,
        timestamps: bool,
        since: str | None,
        stream: str | None,
        drop_after: int | None,
    ) -> None:
        self._fake = fake
        self._pod = pod
        self._follow = follow
        self._timestamps = timestamps
        self._since = since
        self._stream = stream
        self._drop_after = drop_after
        self._at_line_start = True
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self._follow:  # only followers ever wait
            with self._fake.lock:
                self._fake.pod_cond(self._pod).notify_all()

    def __iter__(self) -> Iterator[bytes]:
        index = 0
        sent = 0
        chunk = self._fake.log_chunk
        while True:
            found = self._next_entries(index)
            if found is None:
                return
            batch, index = found
            data = self._render(batch)
            for start in range(0, len(data), chunk):
                piece = bytes(data[start : start + chunk])
                if self._drop_after is not None and sent + len(piece) > self._drop_after:
                    cut = self._drop_after - sent
                    if cut > 0:
                        yield piece[:cut]
                    raise Unreachable("log stream: connection reset mid-line")
                sent += len(piece)
                yield piece

    def _next_entries(self, index: int) -> tuple[list[tuple[str, str, bytes]], int] | None:
        """Log entries from ``index`` on and the index after them; None when the stream ends."""
        fake = self._fake
        # A one-shot read needs no lock: entries are only ever appended.
        with fake.cond if self._follow else contextlib.nullcontext():
            while True:
                if self.closed:
                    return None
                entries = fake.logs.get(self._pod, [])
                if index < len(entries):
                    return entries[index:], len(entries)
                if not self._follow or fake.container_done(self._pod):
                    return None
                # Notified on every log line and pod change: the timeout is only a safety
                # net. A short one wakes every follower in the process twice a second,
                # a herd (and a GIL convoy) no real follow, blocked in recv(), produces.
                fake.pod_cond(self._pod).wait(5.0)

    def _render(self, batch: list[tuple[str, str, bytes]]) -> bytearray:
        """The entries this request asked for (stream, sinceTime), framed as the kubelet does.

        Each entry is one CRI record (one without a newline is a P record). As
        ``ReadLogs`` in k8s.io/cri-client/pkg/logs (Kubernetes 1.33): a record gets a
        timestamp when the record before it in the file ended a line, whichever stream
        it was on and whether or not this request sent it (``isNewLine`` is updated for
        records filtered out by ``stream`` or ``sinceTime`` too).
        """
        data = bytearray()
        for ts, stream, line in batch:
            prefix = self._timestamps and self._at_line_start
            self._at_line_start = line.endswith(b"\n") or not line
            if self._stream is not None and stream != self._stream:
                continue
            if self._since is not None and ts[:19] < self._since[:19]:
                continue
            data += (ts.encode() + b" " + line) if prefix else line
        return data


# -- the fake --------------------------------------------------------------------------


def parse_selector(selector: str) -> dict[str, str]:
    out = {}
    for part in filter(None, selector.split(",")):
        key, _, value = part.partition("=")
        out[key] = value
    return out


def matches(obj: KubeObject, selector: dict[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass
class _PodRun:
    script: tuple[Step, ...]
    log_time: dt.datetime = BASE_TIME
    nanos: int = 0
    started: dt.datetime | None = None


@dataclass
class FakeKube:
    """``KubeApi`` in memory. ``script_for(job_body) -> steps`` decides what each pod does."""

    namespace: str = "bd-test"
    split_streams: bool = True
    version: tuple[int, int] = (1, 33)
    script_for: Callable[[KubeObject], tuple[Step, ...]] = lambda _job: DEFAULT_SCRIPT
    # Admission of the Job's pod: the refusal's text (then no pod, a FailedCreate Event on
    # the Job, as the Job controller records it), or None to admit it.
    admission: Callable[[KubeObject], str | None] = lambda _job: None
    # False: the Job controller never gets to the Job (behind its queue, or not running):
    # no pod, no Event.
    makes_pod: Callable[[KubeObject], bool] = lambda _job: True
    # Kueue's served API version (None: not installed) and the LocalQueues of the namespace.
    kueue: str | None = None
    local_queues: frozenset[str] = frozenset()
    log_chunk: int = 1 << 16
    max_history: int = 5000
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)  # watch streams wait here
        # Log followers wait on their own pod's condition: one pod's output must not wake
        # every follower in the process (the real API server streams per request).
        self.pod_conds: dict[str, threading.Condition] = {}
        # Bookkeeping has its own lock: under a hundred threads one shared lock turns
        # into a convoy, and the benchmark would be measuring the fake, not the executor.
        self._calls_lock = threading.Lock()
        self.rv = 100
        self.compacted_rv = 0
        self.jobs: dict[str, KubeObject] = {}
        self.pods: dict[str, KubeObject] = {}
        self.events_by_object: dict[str, list[KubeObject]] = collections.defaultdict(list)
        self.logs: dict[str, list[tuple[str, str, bytes]]] = {}
        # Append-only, trimmed from the front in batches; ``base`` is the absolute index
        # of history[0], so each watch keeps a cursor instead of rescanning.
        self.history: list[tuple[int, str, str, KubeObject]] = []
        self.base = 0
        self.watches: set[_WatchStream] = set()
        self.faults: dict[str, collections.deque[_Fault]] = collections.defaultdict(collections.deque)
        self.calls: collections.Counter[str] = collections.Counter()
        self.log_drops: dict[str, int] = {}
        self.runs: dict[str, _PodRun] = {}
        self.job_pods: dict[str, list[str]] = {}
        self.threads: list[threading.Thread] = []
        self.deleted_jobs: list[str] = []
        self.deleted_pods: list[str] = []
        self.finalizers_removed: list[str] = []
        self.log_requests: list[dict[str, Any]] = []
        self._names = itertools.count(1)

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)

    # -- test controls --------------------------------------------------------------

    def inject(self, operation: str, error: Exception, *, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` fail with ``error``."""
        self.faults[operation].append(_Fault(error, times))

    def storm(self, operation: str, *, times: int, retry_after: float = 0.001) -> None:
        self.inject(operation, TooManyRequests("storm", status=429, retry_after=retry_after), times=times)

    def bookmark(self) -> None:
        """A BOOKMARK carrying the newest resourceVersion to every open watch."""
        with self.cond:
            self._append("*", "BOOKMARK", {"metadata": {"resourceVersion": self._bump()}})

    def expire_watches(self, *, compact: bool = True) -> None:
        """Every open watch gets 410 Gone; with ``compact`` re-watching from its version does too."""
        with self.cond:
            if compact:
                self.compacted_rv = self.rv
                self.base += len(self.history)
                self.history.clear()
            for watch in self.watches:
                watch.expire = True
            self.cond.notify_all()

    def drop_watches(self) -> None:
        with self.cond:
            for watch in self.watches:
                watch.drop = True
            self.cond.notify_all()

    def drop_log(self, pod_prefix: str, *, after_bytes: int) -> None:
        """The next log stream of a pod whose name starts so breaks after that many bytes."""
        self.log_drops[pod_prefix] = after_bytes

    def pod_of(self, job: str) -> KubeObject | None:
        with self.cond:
            for pod in self.pods.values():
                if pod["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job:
                    return pod
        return None

    def wait_idle(self, timeout: float = 5.0) -> None:
        for thread in list(self.threads):
            thread.join(timeout)

    # -- plumbing -------------------------------------------------------------------

    def _check(self, operation: str) -> None:
        with self._calls_lock:
            self.calls[operation] += 1
            queue = self.faults.get(operation)
            if queue:
                fault = queue[0]
                fault.times -= 1
                if fault.times <= 0:
                    queue.popleft()
                raise fault.error

    def _append(self, kind: str, event: str, obj: KubeObject) -> None:
        self.history.append((self.rv, kind, event, obj))
        if len(self.history) > 2 * self.max_history:
            drop = len(self.history) - self.max_history
            self.compacted_rv = self.history[drop - 1][0]
            del self.history[:drop]
            self.base += drop
        self.cond.notify_all()

    def start_index(self, rv: int) -> int | None:
        """Absolute history index of the first change after ``rv``; None when compacted."""
        if rv < self.compacted_rv:
            return None
        return self.base + bisect.bisect_right(self.history, rv, key=lambda e: e[0])

    def events_from(
        self, index: int, kind: str, selector: dict[str, str]
    ) -> tuple[list[tuple[int, str, KubeObject]], int] | None:
        if index < self.base:
            return None
        out = []
        for event_rv, event_kind, event, obj in self.history[index - self.base :]:
            if event_kind == "*":
                out.append((event_rv, "BOOKMARK", obj))
            elif event_kind == kind and matches(obj, selector):
                out.append((event_rv, event, obj))
        return out, self.base + len(self.history)

    def pod_cond(self, pod: str) -> threading.Condition:
        with self.lock:
            cond = self.pod_conds.get(pod)
            if cond is None:
                cond = self.pod_conds[pod] = threading.Condition(self.lock)
            return cond

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _put(self, kind: str, obj: KubeObject, event: str) -> KubeObject:
        """Store a new version of an object (a new dict, never mutated later)."""
        meta = {**obj["metadata"], "resourceVersion": self._bump()}
        new = {**obj, "metadata": meta}
        store = self.jobs if kind == "jobs" else self.pods
        if kind == "pods":
            self.pod_cond(meta["name"]).notify_all()
        if event == "DELETED":
            store.pop(meta["name"], None)
            if kind == "pods":  # what the kubelet would garbage-collect with the pod
                self.logs.pop(meta["name"], None)
                self.runs.pop(meta["name"], None)
                self.pod_conds.pop(meta["name"], None)
                self.events_by_object.pop(meta["name"], None)
        else:
            store[meta["name"]] = new
        self._append(kind, event, new)
        return new

    def _event(self, obj: KubeObject, kind: str, reason: str, message: str, type_: str = "Warning") -> None:
        name = obj["metadata"]["name"]
        self.events_by_object[name].append(
            {
                "type": type_,
                "reason": reason,
                "message": message,
                "count": 1,
                "involvedObject": {"kind": kind, "name": name, "uid": obj["metadata"]["uid"]},
                "lastTimestamp": seconds(self.now),
            }
        )

    # -- KubeApi: jobs --------------------------------------------------------------

    def create_job(self, body: KubeObject) -> KubeObject:
        self._check("create_job")
        with self.cond:
            name = body["metadata"]["name"]
            if name in self.jobs:
                raise AlreadyExists(f'jobs.batch "{name}" already exists', status=409, reason="AlreadyExists")
            meta = {
                **body["metadata"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": seconds(self.now),
                "namespace": self.namespace,
            }
            created = self._put("jobs", {**body, "metadata": meta, "status": {}}, "ADDED")
            if not self.makes_pod(body) or body["spec"].get("suspend"):
                return created  # not synced by the Job controller: no startTime, no pod, no Event
            # The Job controller's first sync (seen on the watch, not in the create's answer):
            # startTime, then the pod, or its refusal.
            job = self._put("jobs", {**created, "status": {"startTime": seconds(self.now)}}, "MODIFIED")
            refusal = self.admission(body)
            if refusal is not None:
                self._event(job, "Job", "FailedCreate", f"Error creating: {refusal}")
                return created
            pod = self._create_pod(job)
        self._run_script(pod["metadata"]["name"], self.script_for(body))
        return created

    # -- Kueue, as a Job sees it: un-suspended on admission, suspended again on preemption

    def admit(self, name: str) -> None:
        """Kueue admits the Job: un-suspended, the Job controller stamps startTime, makes the pod."""
        with self.cond:
            job = self.jobs[name]
            job = self._put("jobs", {**job, "spec": {**job["spec"], "suspend": False},
                                     "status": {**job["status"], "startTime": seconds(self.now)}}, "MODIFIED")
            pod = self._create_pod(job)
        self._run_script(pod["metadata"]["name"], self.script_for(job))

    def preempt(self, name: str, message: str, *, grace: float = 0.0, readmit_after: float | None = None,
                stop_seconds: float = 0.2) -> None:
        """Kueue takes the quota back: the Job suspended, its pods deleted, a ``Stopped`` Event.

        As Kueue's ``Job.Stop`` does (v0.17): the suspend carries the annotation
        ``kueue.x-k8s.io/stopping``; ``stop_seconds`` later its status and pod-set patches
        end the stop, the annotation goes and the ``Stopped`` Event is recorded, but only
        if the Job still exists then (a patch of a deleted Job fails, and no Event comes).
        ``grace``: the deleted pod's container ends that much later (SIGTERM's grace).
        ``readmit_after``: Kueue requeues the workload and admits the same Job again
        (a new pod) that much after the stop and the grace, if the Job still exists then,
        as real Kueue does.
        """
        with self.cond:
            job = self.jobs[name]
            meta = {**job["metadata"], "annotations": {**(job["metadata"].get("annotations") or {}),
                                                        KUEUE_STOPPING: "true"}}
            self._put("jobs", {**job, "metadata": meta, "spec": {**job["spec"], "suspend": True}}, "MODIFIED")
            pods = [self.pods[p] for p in self.job_pods.get(name, ()) if p in self.pods]
            for pod in pods:
                if grace <= 0:
                    self._delete_pod(pod)
                else:  # marked for deletion now, its container stopped after the grace
                    self._put("pods", {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": seconds(self.now)}},
                              "MODIFIED")
        self._later(stop_seconds, lambda: self._stopped(name, message))
        if grace > 0:
            self._later(grace, lambda: self._stop_pods([p["metadata"]["name"] for p in pods]))
        if readmit_after is not None:
            # Kueue requeues the workload once the stop is done and the Job has no active
            # pod (its quota reservation is dropped then), and admits it when quota frees.
            self._later(max(stop_seconds, grace) + readmit_after,
                        lambda: self.admit(name) if name in self.jobs else None)

    def _stopped(self, name: str, message: str) -> None:
        """Kueue's stop ends: startTime reset, the stopping annotation removed, the Event."""
        with self.cond:
            job = self.jobs.get(name)
            if job is None:
                return
            status = {k: v for k, v in job["status"].items() if k != "startTime"}
            annotations = {k: v for k, v in (job["metadata"].get("annotations") or {}).items() if k != KUEUE_STOPPING}
            job = self._put("jobs", {**job, "metadata": {**job["metadata"], "annotations": annotations},
                                     "status": status}, "MODIFIED")
            self._event(job, "Job", "Stopped", message, type_="Normal")

    def _stop_pods(self, names: list[str]) -> None:
        with self.cond:
            for name in names:
                if name in self.pods:
                    self._delete_pod(self.pods[name])

    def _later(self, seconds_: float, action: Callable[[], object]) -> None:
        def run() -> None:
            time.sleep(seconds_)
            action()

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _create_pod(self, job: KubeObject) -> KubeObject:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name'][:57]}-{next(self._names):05d}"
        labels = {
            **template["metadata"].get("labels", {}),
            "batch.kubernetes.io/job-name": job["metadata"]["name"],
            "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
        }
        meta = {
            "name": name,
            "namespace": self.namespace,
            "uid": str(uuid.uuid4()),
            "labels": labels,
            "annotations": template["metadata"].get("annotations", {}),
            "finalizers": list(template["metadata"].get("finalizers", [])),
            "creationTimestamp": seconds(self.now),
            "ownerReferences": [{"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}],
        }
        self.logs[name] = []
        self.job_pods.setdefault(job["metadata"]["name"], []).append(name)
        return self._put(
            "pods",
            {"metadata": meta, "spec": dict(template["spec"]), "status": {"phase": "Pending"}},
            "ADDED",
        )

    def get_job(self, name: str) -> KubeObject:
        self._check("get_job")
        with self.cond:
            if name not in self.jobs:
                raise NotFound(f'jobs.batch "{name}" not found', status=404, reason="NotFound")
            return self.jobs[name]

    def delete_job(self, name: str, *, propagation: str = "Background") -> None:
        self._check("delete_job")
        with self.cond:
            job = self.jobs.get(name)
            if job is None:
                raise NotFound(f'jobs.batch "{name}" not found', status=404)
            self._put("jobs", job, "DELETED")
            self.deleted_jobs.append(name)
            for pod_name in self.job_pods.get(name, ()):
                if pod_name not in self.pods:
                    continue
                if propagation != "Orphan":
                    self._delete_pod(self.pods[pod_name])
                else:  # the garbage collector drops the owner reference; the pod runs on
                    pod = self.pods[pod_name]
                    self._put("pods", {**pod, "metadata": {**pod["metadata"], "ownerReferences": []}}, "MODIFIED")

    def _delete_pod(self, pod: KubeObject) -> None:
        meta = pod["metadata"]
        if meta.get("finalizers"):
            status = pod["status"]
            if status.get("phase") not in ("Succeeded", "Failed"):
                status = self._terminated_status(pod, 143, "Error")
            self._put(
                "pods",
                {**pod, "metadata": {**meta, "deletionTimestamp": seconds(self.now)}, "status": status},
                "MODIFIED",
            )
        else:
            self._put("pods", pod, "DELETED")

    def list_jobs(self, label_selector: str) -> tuple[list[KubeObject], str]:
        self._check("list_jobs")
        selector = parse_selector(label_selector)
        with self.cond:
            return [j for j in self.jobs.values() if matches(j, selector)], str(self.rv)

    def watch_jobs(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> _WatchStream:
        return self._watch("jobs", label_selector, resource_version, timeout_seconds)

    # -- KubeApi: pods --------------------------------------------------------------

    def get_pod(self, name: str) -> KubeObject:
        self._check("get_pod")
        with self.cond:
            if name not in self.pods:
                raise NotFound(f'pods "{name}" not found', status=404)
            return self.pods[name]

    def list_pods(self, label_selector: str) -> tuple[list[KubeObject], str]:
        self._check("list_pods")
        selector = parse_selector(label_selector)
        with self.cond:
            return [p for p in self.pods.values() if matches(p, selector)], str(self.rv)

    def watch_pods(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> _WatchStream:
        return self._watch("pods", label_selector, resource_version, timeout_seconds)

    def _watch(self, kind: str, selector: str, rv: str, timeout: int) -> _WatchStream:
        self._check(f"watch_{kind}")
        stream = _WatchStream(self, kind, parse_selector(selector), int(rv), float(timeout))
        with self.cond:
            self.watches.add(stream)
        return stream

    def stream_pod_log(
        self,
        name: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        since_time: str | None = None,
        stream: LogStreamName | None = None,
        tail_lines: int | None = None,
    ) -> _LogStream:
        self._check("stream_pod_log")
        self.log_requests.append({"pod": name, "follow": follow, "since": since_time, "stream": stream,
                                  "timestamps": timestamps})
        if stream is not None:
            # What the API server validates before it looks the pod up.
            if not self.split_streams:
                raise Invalid("PodLogOptions: stream: Forbidden: may not be specified", status=422)
            if tail_lines is not None:
                raise Invalid("`tailLines` and specific `stream` are mutually exclusive for now", status=422)
        with self.cond:
            pod = self.pods.get(name)
            if pod is None:
                raise NotFound(f'pods "{name}" not found', status=404)
            if name not in self.runs or self.runs[name].started is None:
                raise BadRequest(f'container "{container}" in pod "{name}" is waiting to start', status=400)
            drop = None
            for prefix, after in list(self.log_drops.items()):
                if name.startswith(prefix):
                    drop = after
                    del self.log_drops[prefix]
        want = None if stream is None else ("stdout" if stream is LogStreamName.STDOUT else "stderr")
        return _LogStream(
            self,
            name,
            follow=follow,
            timestamps=timestamps,
            since=since_time,
            stream=want if self.split_streams else None,
            drop_after=drop,
        )

    def list_events(self, *, name: str, uid: str | None = None) -> list[KubeObject]:
        self._check("list_events")
        with self.cond:
            return [e for e in self.events_by_object.get(name, []) if uid is None or e["involvedObject"]["uid"] == uid]

    def create_event(self, *, involved: KubeObject, reason: str, message: str, warning: bool = False) -> None:
        self._check("create_event")
        with self.cond:
            meta = involved.get("metadata") or {}
            self.events_by_object.setdefault(str(meta.get("name")), []).append({
                "involvedObject": {"kind": "Job", "name": meta.get("name"), "uid": meta.get("uid")},
                "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
                "source": {"component": "batchdrain"},
            })

    def remove_pod_finalizer(self, name: str, finalizer: str) -> None:
        self._check("remove_pod_finalizer")
        with self.cond:
            pod = self.pods.get(name)
            if pod is None:
                raise NotFound(f'pods "{name}" not found', status=404)
            finalizers = [f for f in pod["metadata"].get("finalizers", []) if f != finalizer]
            self.finalizers_removed.append(name)
            meta = {**pod["metadata"], "finalizers": finalizers}
            if meta.get("deletionTimestamp") and not finalizers:
                self._put("pods", {**pod, "metadata": meta}, "DELETED")
            else:
                self._put("pods", {**pod, "metadata": meta}, "MODIFIED")

    def delete_pod(self, name: str, *, uid: str | None = None) -> None:
        self._check("delete_pod")
        with self.cond:
            pod = self.pods.get(name)
            if pod is None or (uid is not None and pod["metadata"].get("uid") != uid):
                raise NotFound(f'pods "{name}" not found', status=404)
            self.deleted_pods.append(name)
            self._delete_pod(pod)

    def evict_pod(self, name: str) -> None:
        self._check("evict_pod")
        with self.cond:
            if name not in self.pods:
                raise NotFound(f'pods "{name}" not found', status=404)
        self._step(name, Evict(via_api=True))

    def server_version(self) -> dict[str, str]:
        self._check("server_version")
        major, minor = self.version
        return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"}

    def namespace_exists(self) -> bool | None:
        self._check("namespace_exists")
        return True

    def kueue_version(self) -> str | None:
        self._check("kueue_version")
        return self.kueue

    def local_queue_exists(self, name: str, *, group_version: str) -> bool | None:
        self._check("local_queue_exists")
        return name in self.local_queues

    def can_i(self, verb: str, resource: str, *, subresource: str | None = None) -> bool:
        self._check("can_i")
        return True

    # -- the kubelet ----------------------------------------------------------------

    def container_done(self, pod: str) -> bool:
        obj = self.pods.get(pod)
        if obj is None:
            return True
        return obj["status"].get("phase") in ("Succeeded", "Failed")

    def _run_script(self, pod: str, script: tuple[Step, ...]) -> None:
        self.runs[pod] = _PodRun(script)
        for i, step in enumerate(script):
            if isinstance(step, Gate):
                rest = script[i + 1 :]

                def later(event: threading.Event = step.event, rest: tuple[Step, ...] = rest) -> None:
                    if event.wait(10.0):
                        for s in rest:
                            if isinstance(s, Hang) or not self._step(pod, s):
                                return

                thread = threading.Thread(target=later, daemon=True)
                self.threads.append(thread)
                thread.start()
                return
            if isinstance(step, Hang) or not self._step(pod, step):
                return

    def _container(self, pod: KubeObject, state: KubeObject, *, image_id: str = "") -> list[KubeObject]:
        image = pod["spec"]["containers"][0]["image"]
        return [
            {
                "name": pod["spec"]["containers"][0]["name"],
                "image": image,
                "imageID": image_id,
                "ready": "running" in state,
                "restartCount": 0,
                "state": state,
            }
        ]

    def _terminated_status(self, pod: KubeObject, code: int, reason: str, *, message: str | None = None) -> KubeObject:
        run = self.runs.get(pod["metadata"]["name"])
        started = seconds(run.started) if run and run.started else None
        old = (pod["status"].get("containerStatuses") or [{}])[0]
        term = {"exitCode": code, "reason": reason, "finishedAt": seconds(self.now)}
        if started:
            term["startedAt"] = started
        if message:
            term["message"] = message
        return {
            **pod["status"],
            "phase": "Succeeded" if code == 0 and reason == "Completed" else "Failed",
            "containerStatuses": self._container(pod, {"terminated": term}, image_id=old.get("imageID", "")),
        }

    def _job_condition(self, job_name: str, ok: bool, reason: str, message: str) -> None:
        job = self.jobs.get(job_name)
        if job is None:
            return
        when = seconds(self.now)
        if ok:
            conditions = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": reason,
                    "lastTransitionTime": when,
                },
                {"type": "Complete", "status": "True", "reason": reason, "lastTransitionTime": when},
            ]
            status = {"succeeded": 1, "conditions": conditions}
        else:
            conditions = [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": when,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": when,
                },
            ]
            status = {"failed": 1, "conditions": conditions}
        self._put("jobs", {**job, "status": status}, "MODIFIED")

    def _backoff_limit_reached(self, job_name: str) -> None:
        self._job_condition(job_name, False, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    def _step(self, pod_name: str, step: Step) -> bool:
        """Apply one step; False when the pod is gone and the script must stop."""
        with self.cond:
            pod = self.pods.get(pod_name)
            if pod is None:
                return False
            apply = self._STEP_HANDLERS.get(type(step))
            if apply is not None:  # Gate and Hang are the script's own, see _run_script
                apply(self, pod, step)
            return True

    # -- one handler per kind of step, called by _step with the lock held ------------

    def _schedule(self, pod: KubeObject, step: Schedule) -> None:
        conds = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": seconds(self.now)}]
        self._put(
            "pods",
            {**pod, "spec": {**pod["spec"], "nodeName": step.node}, "status": {**pod["status"], "conditions": conds}},
            "MODIFIED",
        )

    def _unschedulable(self, pod: KubeObject, step: Unschedulable) -> None:
        conds = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": step.message,
                "lastTransitionTime": seconds(self.now),
            }
        ]
        self._put("pods", {**pod, "status": {**pod["status"], "conditions": conds}}, "MODIFIED")
        self._event(pod, "Pod", "FailedScheduling", step.message)

    def _waiting(self, pod: KubeObject, step: Waiting) -> None:
        state = {"waiting": {"reason": step.reason, "message": step.message}}
        self._put(
            "pods", {**pod, "status": {**pod["status"], "containerStatuses": self._container(pod, state)}}, "MODIFIED"
        )
        self._event(pod, "Pod", "Failed", f"Error: {step.reason}")

    def _start(self, pod: KubeObject, step: Start) -> None:
        run = self.runs[pod["metadata"]["name"]]
        run.started = run.log_time = self.now
        state = {"running": {"startedAt": seconds(self.now)}}
        status = {
            **pod["status"],
            "phase": "Running",
            "containerStatuses": self._container(pod, state, image_id=step.image_id),
        }
        self._put("pods", {**pod, "status": status}, "MODIFIED")

    def _out(self, pod: KubeObject, step: Out) -> None:
        pod_name = pod["metadata"]["name"]
        run = self.runs[pod_name]
        if not step.same_time:
            # About three lines a second, so sinceTime (whole seconds) re-sends
            # lines a resuming reader has already stored.
            run.nanos += 300_000_010
        moment = run.log_time + dt.timedelta(seconds=run.nanos // 1_000_000_000)
        self.logs[pod_name].append((stamp(moment, run.nanos % 1_000_000_000), step.stream, step.data))
        self.pod_cond(pod_name).notify_all()

    def _exit(self, pod: KubeObject, step: Exit) -> None:
        job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        reason = step.reason or ("Completed" if step.code == 0 else "Error")
        status = self._terminated_status(pod, step.code, reason, message=step.message)
        new = self._put("pods", {**pod, "status": status}, "MODIFIED")
        if new["status"]["phase"] == "Succeeded":
            self._job_condition(job_name, True, "CompletionsReached", "Reached expected number of succeeded pods")
        else:
            self._backoff_limit_reached(job_name)

    def _evict(self, pod: KubeObject, step: Evict) -> None:
        disruption = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI" if step.via_api else "TerminationByKubelet",
            "message": step.message,
        }
        new_status = self._terminated_status(pod, 137, "Error")
        if not step.via_api:
            new_status = {**new_status, "reason": "Evicted", "message": step.message}
        new_status["conditions"] = [*pod["status"].get("conditions", []), disruption]
        meta = pod["metadata"]
        if step.via_api:
            meta = {**meta, "deletionTimestamp": seconds(self.now)}
        self._put("pods", {**pod, "metadata": meta, "status": new_status}, "MODIFIED")
        self._backoff_limit_reached(pod["metadata"]["labels"]["batch.kubernetes.io/job-name"])

    def _delete(self, pod: KubeObject, step: DeletePod) -> None:
        self._delete_pod(pod)
        self._backoff_limit_reached(pod["metadata"]["labels"]["batch.kubernetes.io/job-name"])

    def _node_lost(self, pod: KubeObject, step: NodeLost) -> None:
        new_status = self._terminated_status(
            pod,
            137,
            "ContainerStatusUnknown",
            message="The container could not be located when the pod was terminated",
        )
        disruption = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
        }
        new_status["conditions"] = [*pod["status"].get("conditions", []), disruption]
        meta = {**pod["metadata"], "deletionTimestamp": seconds(self.now)}
        self._put("pods", {**pod, "metadata": meta, "status": new_status}, "MODIFIED")
        self._backoff_limit_reached(pod["metadata"]["labels"]["batch.kubernetes.io/job-name"])

    def _deadline(self, pod: KubeObject, step: Deadline) -> None:
        job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        self._job_condition(job_name, False, "DeadlineExceeded", "Job was active longer than specified deadline")
        self._delete_pod(self.pods[pod["metadata"]["name"]])

    _STEP_HANDLERS: ClassVar[dict[type[Any], Callable[[FakeKube, KubeObject, Any], None]]] = {
        Schedule: _schedule,
        Unschedulable: _unschedulable,
        Waiting: _waiting,
        Start: _start,
        Out: _out,
        Exit: _exit,
        Evict: _evict,
        DeletePod: _delete,
        NodeLost: _node_lost,
        Deadline: _deadline,
    }

def server_error(retry_after: float | None = None) -> ServerError:
    return ServerError("etcdserver: request timed out", status=500, retry_after=retry_after)
