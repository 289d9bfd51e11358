"""Removing an attempt's objects once its logs are stored, and the session's leak audit.

Order matters: the Job is deleted and the pod's ``batchdrain.io/logs`` finalizer
removed only after the logs are closed, so a pod deleted early keeps its log readable
until then. The leak audit at session end waits on the session's own watches (the
``Inventory``) for pods of deleted Jobs to go, then lists once to report what is left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from batchdrain.executors.kubernetes.events import job_reference
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.executors.kubernetes.watches import Inventory, object_name
from batchdrain.jobspec import LOGS_FINALIZER, job_name_of_pod, session_selector
from batchdrain.kube import KubeApi, KubeError, NotFound

# Session end: how long pods of deleted Jobs may take to disappear before they count as leaks.
LEAK_GRACE_SECONDS = 30.0


def remove_attempt_objects(api: KubeApi, attempt: LiveAttempt) -> list[dict[str, Any]]:
    """Delete the Job, then let its pods go: only ever after the logs are closed.

    A pod whose Job someone else deleted with ``--cascade=orphan`` has no owner left, so
    no garbage collector will remove it: it is deleted here (by UID, never a namesake).
    """
    errors: list[dict[str, Any]] = []
    orphaned = attempt.tracker.job_gone
    try:
        api.delete_job(attempt.job_name, propagation="Background")
    except NotFound:
        pass
    except KubeError as err:
        errors.append({"op": "delete_job", **err.as_status()})
    for name in sorted(attempt.tracker.pods):
        if name in attempt.tracker.pods_gone:
            continue
        pod = attempt.tracker.pods[name]
        _drop(errors, "remove_pod_finalizer", name, functools.partial(api.remove_pod_finalizer, name, LOGS_FINALIZER))
        if orphaned and not _owned(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            uid = (pod.get("metadata") or {}).get("uid")
            _drop(errors, "delete_pod", name, functools.partial(api.delete_pod, name, uid=uid))
    return errors


def _owned(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def _drop(errors: list[dict[str, Any]], op: str, pod: str, call: Callable[[], None]) -> None:
    """Run one removal; gone already is fine, any other failure is kept on the attempt."""
    try:
        call()
    except NotFound:
        pass
    except KubeError as err:
        errors.append({"op": op, "pod": pod, **err.as_status()})


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
