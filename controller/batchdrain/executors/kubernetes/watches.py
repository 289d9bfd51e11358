"""The session's two watches and the hub that routes their events to attempts.

One list+watch for the session's Jobs and one for its Pods (``kube.watch.Reflector``:
list, then watch from the resourceVersion, relist on 410, reconnect on drops). The
``Hub`` dispatches each event by Job name to the ``Tracker`` of the attempt waiting
for it, so no attempt ever polls the API server, however many run at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from batchdrain.classify.kube import pod_terminal
from batchdrain.jobspec import CONTAINER, job_name_of_pod, session_selector
from batchdrain.kube import KubeApi, KubeError, KubeObject
from batchdrain.kube.watch import EventHandler, ListFn, Reflector, WatchFn


def resource_version(obj: KubeObject) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def is_newer(old: KubeObject | None, new: KubeObject) -> bool:
    """Out-of-order copies (a GET answered after a watch event) must not win."""
    if old is None:
        return True
    old_rv, new_rv = resource_version(old), resource_version(new)
    return old_rv is None or new_rv is None or new_rv >= old_rv


def container_state(pod: KubeObject) -> KubeObject:
    """The ``state`` of the phase container (``{}`` before the kubelet reports it)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state: KubeObject = status.get("state") or {}
            return state
    return {}


def object_name(obj: KubeObject | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("name"))


class Tracker:
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
            elif is_newer(self.job, obj):
                self.job = obj
            self.version += 1
            self.cond.notify_all()

    def on_pod(self, kind: str, obj: KubeObject) -> None:
        name = object_name(obj)
        with self.cond:
            if kind == "DELETED":
                self.pods_gone.add(name)
                if name in self.pods and is_newer(self.pods[name], obj) and obj.get("status"):
                    self.pods[name] = obj
                    self._current = None
            elif name not in self.pods_gone and is_newer(self.pods.get(name), obj):
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

    def pod_gone(self, pod: KubeObject | None) -> bool:
        return pod is not None and object_name(pod) in self.pods_gone

    def container_done(self) -> bool:
        """The container has exited or the pod is gone: no more output will come."""
        with self.cond:
            pod = self.current_pod()
            if pod is None:
                return self.job_gone
            if self.pod_gone(pod) or pod_terminal(pod):
                return True
            return bool(container_state(pod).get("terminated"))


class Hub:
    """Routes watch events to the tracker of the attempt that owns the Job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trackers: dict[str, Tracker] = {}
        self.failure: KubeError | None = None

    def register(self, job_name: str) -> Tracker:
        tracker = Tracker(job_name)
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
        tracker = self._trackers.get(object_name(obj))
        if tracker is not None:
            tracker.on_job(kind, obj)

    def on_pod(self, kind: str, obj: KubeObject) -> None:
        job = job_name_of_pod(obj)
        if job is None:
            return
        tracker = self._trackers.get(job)
        if tracker is not None:
            tracker.on_pod(kind, obj)

    def poke_all(self) -> None:
        """Wake every attempt (a stop was requested).

        Without the hub's lock: it runs in a signal handler, and copying the dict's
        values is a single step under the GIL. A tracker's condition is reentrant.
        """
        for tracker in list(self._trackers.values()):
            tracker.poke()

    def fail(self, error: KubeError) -> None:
        with self._lock:
            self.failure = error
            trackers = list(self._trackers.values())
        for tracker in trackers:
            tracker.fail(error)


class Inventory:
    """Which of the session's own Jobs and pods exist now, as its two watches tell it.

    The leak audit waits on this instead of polling lists: the watches already see
    every Job and pod of the session come and go.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jobs: dict[str, KubeObject] = {}
        self.pods: dict[str, KubeObject] = {}
        # Jobs this session deleted whose DELETED event has not come yet: the leak audit
        # knows their pods are on their way out. Only those, so that it stays as small as
        # the Jobs in flight rather than growing with every attempt of the session.
        self.deleting: set[str] = set()

    def _apply(self, into: dict[str, KubeObject], kind: str, obj: KubeObject) -> None:
        with self.cond:
            if kind == "DELETED":
                into.pop(object_name(obj), None)
            elif kind != "BOOKMARK":
                into[object_name(obj)] = obj
            self.cond.notify_all()

    def on_job(self, kind: str, obj: KubeObject) -> None:
        with self.cond:
            if kind == "DELETED":
                self.deleting.discard(object_name(obj))
            self._apply(self.jobs, kind, obj)

    def job_deleted(self, name: str, *, gone_seen: bool) -> None:
        """This session deleted Job ``name``; ``gone_seen``: its tracker already had the DELETED event.

        The hub hears an event before the inventory does (``_both``): a Job gone for its
        tracker but still listed here is about to leave, and is marked so that the audit
        never sees it unmarked; one gone from both needs nothing.
        """
        with self.cond:
            if not gone_seen or name in self.jobs:
                self.deleting.add(name)

    def on_pod(self, kind: str, obj: KubeObject) -> None:
        self._apply(self.pods, kind, obj)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


@dataclass
class _Pair:
    """The Job and Pod reflectors of one session label, shared by its attempts."""

    jobs: Reflector
    pods: Reflector
    users: int = 0

    def stop(self) -> None:
        self.jobs.stop()
        self.pods.stop()


class SessionWatches:
    """Watches by session label: this session's own, and dead sessions' while adopting.

    The session's own pair lives until ``stop_all``; a dead session's pair is shared by
    the adoptions of its attempts and stopped when the last one releases it.
    """

    def __init__(self, api: KubeApi, hub: Hub, *, failure_budget_seconds: float,
                 watch_timeout_seconds: int) -> None:
        self._api = api
        self._hub = hub
        self._budget = failure_budget_seconds
        self._watch_timeout = watch_timeout_seconds
        self._pairs: dict[str, _Pair] = {}
        self._lock = threading.Lock()
        self.own: str | None = None
        self.inventory = Inventory()

    def _reflector(self, kind: str, selector: str, list_fn: ListFn, watch_fn: WatchFn,
                   on_event: EventHandler) -> Reflector:
        return Reflector(
            kind=kind, label_selector=selector, list_fn=list_fn, watch_fn=watch_fn, on_event=on_event,
            on_failure=self._hub.fail, failure_budget_seconds=self._budget,
            watch_timeout_seconds=self._watch_timeout,
        )

    def acquire(self, session_id: str) -> None:
        """Watch ``session_id``'s objects and wait until both lists are in.

        Raises ``KubeError`` when the watches cannot even list.
        """
        with self._lock:
            pair = self._pairs.get(session_id)
            if pair is None:
                selector = session_selector(session_id)
                on_job: EventHandler = self._hub.on_job
                on_pod: EventHandler = self._hub.on_pod
                if session_id == self.own:
                    on_job, on_pod = _both(on_job, self.inventory.on_job), _both(on_pod, self.inventory.on_pod)
                pair = _Pair(
                    jobs=self._reflector("jobs", selector, self._api.list_jobs, self._api.watch_jobs, on_job),
                    pods=self._reflector("pods", selector, self._api.list_pods, self._api.watch_pods, on_pod),
                )
                self._pairs[session_id] = pair
                pair.jobs.start()
                pair.pods.start()
            pair.users += 1
        limit = self._budget + 5.0
        for reflector in (pair.jobs, pair.pods):
            if not reflector.wait_synced(limit):
                raise reflector.failed or KubeError(f"the {reflector.kind} watch did not list within {limit:g}s")

    def running(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._pairs

    def reflectors(self, session_id: str) -> tuple[Reflector, Reflector]:
        """The (jobs, pods) reflectors watching ``session_id``; KeyError when none do."""
        pair = self._pairs[session_id]
        return pair.jobs, pair.pods

    def release(self, session_id: str) -> None:
        if session_id == self.own:
            return  # the session's own watches live until stop_all()
        with self._lock:
            pair = self._pairs.get(session_id)
            if pair is None:
                return
            pair.users -= 1
            if pair.users > 0:
                return
            del self._pairs[session_id]
        pair.stop()

    def stop_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs.values())
            self._pairs.clear()
        for pair in pairs:
            pair.stop()


def _both(first: EventHandler, second: EventHandler) -> EventHandler:
    def handle(kind: str, obj: KubeObject) -> None:
        first(kind, obj)
        second(kind, obj)

    return handle
