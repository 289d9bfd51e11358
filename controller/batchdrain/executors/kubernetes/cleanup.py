"""Removing an attempt's objects once its logs are stored, and the session's leak audit.

Order matters: the Job is deleted and the pod's ``batchdrain.io/logs`` finalizer
removed only after the logs are closed, so a pod deleted early keeps its log readable
until then. The leak audit at session end waits on the session's own watches (the
``Inventory``) for pods of deleted Jobs to go, then lists once to report what is left.
A removal that failed past the seam's retry budget (etcd stalled on a compaction, say)
is kept on its attempt and owed: the session tries it once more before that audit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from batchdrain.executors.kubernetes.events import job_reference
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.executors.kubernetes.watches import Inventory, object_name
from batchdrain.jobspec import LOGS_FINALIZER, job_name_of_pod, session_selector
from batchdrain.kube import KubeApi, KubeError, NotFound

# Session end: how long pods of deleted Jobs may take to disappear before they count as leaks.
LEAK_GRACE_SECONDS = 30.0

RemovalOp = Literal["delete_job", "remove_pod_finalizer", "delete_pod"]


@dataclass(frozen=True)
class Removal:
    """One removal an attempt's cleanup could not do, to be tried again at session end."""

    op: RemovalOp
    job: str
    pod: str | None = None
    uid: str | None = None  # delete_pod: only this pod, never a namesake

    def run(self, api: KubeApi) -> None:
        if self.op == "delete_job":
            api.delete_job(self.job, propagation="Background")
        elif self.op == "remove_pod_finalizer" and self.pod is not None:
            api.remove_pod_finalizer(self.pod, LOGS_FINALIZER)
        elif self.op == "delete_pod" and self.pod is not None:
            api.delete_pod(self.pod, uid=self.uid)

    def target(self) -> str:
        return f"pod/{self.pod}" if self.pod is not None else f"job/{self.job}"


@dataclass
class Cleanup:
    """What removing one attempt's objects left undone: ``errors`` go on the attempt."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    owed: list[Removal] = field(default_factory=list)

    @property
    def job_deleted(self) -> bool:
        return not any(r.op == "delete_job" for r in self.owed)

    def attempt(self, api: KubeApi, removal: Removal) -> None:
        """Run one removal; gone already is fine, any other failure is kept and owed."""
        try:
            removal.run(api)
        except NotFound:
            pass
        except KubeError as err:
            pod = {"pod": removal.pod} if removal.pod is not None else {}
            self.errors.append({"op": removal.op, **pod, **err.as_status()})
            self.owed.append(removal)


class OwedRemovals:
    """The session's failed removals: as many as failed, none for attempts cleaned up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owed: list[Removal] = []

    def add(self, removals: list[Removal]) -> None:
        with self._lock:
            self._owed.extend(removals)

    def take(self) -> list[Removal]:
        with self._lock:
            owed, self._owed = self._owed, []
            return owed


def remove_attempt_objects(api: KubeApi, attempt: LiveAttempt) -> Cleanup:
    """Delete the Job, then let its pods go: only ever after the logs are closed.

    A pod whose Job someone else deleted with ``--cascade=orphan`` has no owner left, so
    no garbage collector will remove it: it is deleted here (by UID, never a namesake).
    """
    cleanup = Cleanup()
    orphaned = attempt.tracker.job_gone
    cleanup.attempt(api, Removal("delete_job", attempt.job_name))
    for name in sorted(attempt.tracker.pods):
        if name in attempt.tracker.pods_gone:
            continue
        pod = attempt.tracker.pods[name]
        cleanup.attempt(api, Removal("remove_pod_finalizer", attempt.job_name, name))
        if orphaned and not _owned(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            uid = (pod.get("metadata") or {}).get("uid")
            cleanup.attempt(api, Removal("delete_pod", attempt.job_name, name, uid))
    return cleanup


def retry_owed(api: KubeApi, owed: list[Removal], inventory: Inventory) -> list[tuple[str, str]]:
    """Session end: each owed removal once more (through the seam's retries).

    A Job deleted now is marked deleting, so the audit waits for its pods as for any
    other. Returns (object, why) for each that failed again, to say beside its leak.
    """
    again = Cleanup()
    for removal in owed:
        before = len(again.owed)
        again.attempt(api, removal)
        if removal.op == "delete_job" and len(again.owed) == before:
            inventory.job_deleted(removal.job, gone_seen=False)
    return [(r.target(), f"({r.op} of {r.target()} failed again at session end: {e.get('message', '')})")
            for r, e in zip(again.owed, again.errors, strict=True)]


def _owned(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def audit_leaks(api: KubeApi, *, session_id: str, inventory: Inventory, adopted_jobs: set[str],
                left_jobs: frozenset[str] = frozenset(), grace_seconds: float = LEAK_GRACE_SECONDS) -> list[str]:
    """Jobs and pods of the session (and Jobs it adopted) still present at its end.

    Deleting a Job deletes its pods in the background: while only pods of Jobs this
    session deleted remain, they are on their way out, not leaks; the watches say when
    they are gone (bounded by ``grace_seconds``). A Job still there ends the wait at once.
    Jobs left on purpose for the next session (``left_jobs``: SIGTERM, lost API) and
    their pods are not leaks.
    """
    def settled() -> bool:
        return not inventory.pods or not inventory.deleting.issuperset(inventory.jobs)

    inventory.wait_for(settled, grace_seconds)
    try:
        jobs, _ = api.list_jobs(session_selector(session_id))
        pods, _ = api.list_pods(session_selector(session_id))
    except KubeError as err:
        return [f"leak audit failed: {err.message}"]
    jobs = [j for j in jobs if object_name(j) not in left_jobs]
    pods = [p for p in pods if job_name_of_pod(p) not in left_jobs]
    names = {object_name(j) for j in jobs}
    leaks = [f"job/{n}" for n in sorted(names)]
    for leaked in jobs:
        try:
            api.create_event(involved=job_reference(leaked), reason="Leaked",
                             message=f"still present when session {session_id} ended", warning=True)
        except KubeError as err:
            leaks.append(f"(event Leaked on job/{object_name(leaked)} failed: {err.message})")
    leaks += sorted(f"pod/{object_name(p)}" for p in pods)
    leaks += _adopted_left(api, adopted_jobs - names - left_jobs)
    return leaks


def _adopted_left(api: KubeApi, jobs: set[str]) -> list[str]:
    """Adopted Jobs carry a dead session's label: each is looked up by name."""
    left = []
    for job in sorted(jobs):
        try:
            api.get_job(job)
        except NotFound:
            continue
        except KubeError as err:
            left.append(f"job/{job} (unknown: {err.message})")
            continue
        left.append(f"job/{job}")
    return left
