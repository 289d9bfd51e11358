"""Job, Pod and Event dicts -> failure class, message and exit code: pure functions.

Kubernetes reports why a pod ended in several places that disagree in edge cases: Job
conditions (``Failed``/``FailureTarget`` with reason ``DeadlineExceeded``), pod
``status.reason`` (``Evicted``), the pod's ``DisruptionTarget`` condition (eviction
API, preemption, taint manager, pod GC), container states (``OOMKilled``,
``ContainerStatusUnknown``, waiting ``ImagePullBackOff``) and Events. The order of the
checks below is the precedence: the cause that explains the others wins (a Job past
its deadline has its pod deleted; that deletion is not "pod_deleted").

Condition statuses are the strings "True"/"False"/"Unknown" and are compared with
``== "True"`` ("False" is truthy). An unexpected combination is never "Unknown error":
it is classed ``api_error`` with the raw status attached for a human to read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batchdrain.domain import FailureClass

Obj = dict[str, Any]

IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "ImageInspectError",
    }
)
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# DisruptionTarget reasons (KEP-3329) meaning "the platform took the pod away".
EVICTION_REASONS = frozenset({"EvictionByEvictionAPI", "PreemptionByScheduler", "TerminationByKubelet"})
NODE_LOSS_REASONS = frozenset({"DeletionByTaintManager", "DeletionByPodGC"})
SIGKILL_EXIT = 137
_EVENTS_IN_MESSAGE = 3


@dataclass(frozen=True)
class KubeOutcome:
    failure_class: FailureClass
    message: str
    exit_code: int | None
    exit_code_reason: str | None = None
    raw_status: Obj | None = None


# -- small readers -----------------------------------------------------------------


def condition(obj: Obj | None, kind: str) -> Obj | None:
    """The condition of that type when its status is exactly "True"."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def condition_any(obj: Obj | None, kind: str) -> Obj | None:
    """The condition of that type whatever its status."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def job_outcome(job: Obj | None) -> tuple[bool, str | None, str | None] | None:
    """(succeeded, reason, message) once the Job has a terminal (or target) condition."""
    for kind, ok in (
        ("Complete", True),
        ("SuccessCriteriaMet", True),
        ("Failed", False),
        ("FailureTarget", False),
    ):
        cond = condition(job, kind)
        if cond is not None:
            return ok, cond.get("reason"), cond.get("message")
    return None


def container_status(pod: Obj | None, container: str) -> Obj | None:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == container:
            return dict(status)
    return dict(statuses[0]) if statuses else None


def terminated_state(pod: Obj | None, container: str) -> Obj | None:
    status = container_status(pod, container) or {}
    state = (status.get("state") or {}).get("terminated")
    if state is None:
        state = (status.get("lastState") or {}).get("terminated")
    return dict(state) if state else None


def waiting_state(pod: Obj | None, container: str) -> Obj | None:
    status = container_status(pod, container) or {}
    state = (status.get("state") or {}).get("waiting")
    return dict(state) if state else None


def container_started(pod: Obj | None, container: str) -> bool:
    """True once there are logs to read: the container runs or has run."""
    state = (container_status(pod, container) or {}).get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def pod_terminal(pod: Obj | None) -> bool:
    return ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_phase(pod: Obj | None) -> str | None:
    phase = ((pod or {}).get("status") or {}).get("phase")
    return str(phase) if phase else None


def parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def container_times(pod: Obj | None, container: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(started, finished) of the container, as the kubelet reported them."""
    state = (container_status(pod, container) or {}).get("state") or {}
    running = state.get("running") or {}
    terminated = state.get("terminated") or {}
    started = parse_time(terminated.get("startedAt") or running.get("startedAt"))
    return started, parse_time(terminated.get("finishedAt"))


def image_of(pod: Obj | None, container: str) -> tuple[str | None, str | None]:
    """(image, digest) actually run; the digest comes from ``imageID`` (``...@sha256:...``)."""
    status = container_status(pod, container) or {}
    image = status.get("image")
    image_id = str(status.get("imageID") or "")
    digest = image_id.rsplit("@", 1)[1] if "@" in image_id else (image_id or None)
    return (str(image) if image else None), digest


def events_summary(events: Iterable[Obj], *, limit: int = _EVENTS_IN_MESSAGE) -> str:
    """The latest distinct warning events, as "Reason: message" joined by "; "."""
    warnings = [e for e in events if e.get("type") == "Warning"]
    warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    seen: list[str] = []
    for event in reversed(warnings):
        text = f"{event.get('reason')}: {str(event.get('message') or '').strip()}"
        if text not in seen:
            seen.append(text)
        if len(seen) >= limit:
            break
    return "; ".join(seen)


def raw_status(job: Obj | None, pod: Obj | None, events: Sequence[Obj] = ()) -> Obj:
    """The parts of the Kubernetes status worth keeping on an attempt, JSON-safe."""
    pod_status = (pod or {}).get("status") or {}
    return {
        "job": {
            k: v
            for k, v in ((job or {}).get("status") or {}).items()
            if k in ("conditions", "active", "failed", "succeeded", "ready", "terminating")
        }
        if job is not None
        else None,
        "pod": {
            "name": ((pod or {}).get("metadata") or {}).get("name"),
            "deletionTimestamp": ((pod or {}).get("metadata") or {}).get("deletionTimestamp"),
            "phase": pod_status.get("phase"),
            "reason": pod_status.get("reason"),
            "message": pod_status.get("message"),
            "conditions": pod_status.get("conditions"),
            "containerStatuses": pod_status.get("containerStatuses"),
        }
        if pod is not None
        else None,
        "events": [
            {k: e.get(k) for k in ("type", "reason", "message", "count", "lastTimestamp")} for e in list(events)[-10:]
        ],
    }


def _with_events(message: str, events: Sequence[Obj]) -> str:
    summary = events_summary(events)
    return f"{message} ({summary})" if summary else message


def _one_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# -- while waiting ---------------------------------------------------------------------


def waiting_outcome(pod: Obj | None, *, container: str, events: Sequence[Obj] = ()) -> KubeOutcome | None:
    """Fail fast on waiting states that never heal by themselves (bad image, bad config)."""
    waiting = waiting_state(pod, container)
    if waiting is None:
        return None
    reason = str(waiting.get("reason") or "")
    detail = _one_line(waiting.get("message"))
    text = f"{reason}: {detail}" if detail else reason
    if reason in IMAGE_PULL_REASONS:
        return KubeOutcome(
            FailureClass.IMAGE_PULL,
            f"image could not be pulled: {text}",
            None,
            f"the container never started ({reason})",
            raw_status(None, pod, events),
        )
    if reason in CONFIG_REASONS:
        return KubeOutcome(
            FailureClass.CONFIG_ERROR,
            f"container could not be created: {text}",
            None,
            f"the container never started ({reason})",
            raw_status(None, pod, events),
        )
    return None


def pending_outcome(
    pod: Obj | None,
    *,
    container: str,
    now: dt.datetime,
    created_at: dt.datetime,
    scheduling_timeout: float,
    start_timeout: float,
    scheduled_at: dt.datetime | None = None,
    events: Sequence[Obj] = (),
) -> KubeOutcome | None:
    """Give up on a pod that is not scheduled, or not started, within its time limit.

    The two limits are separate because they mean different things: unschedulable is
    a capacity or constraint problem, slow to start is a node, volume or image problem.
    ``scheduled_at`` (when the caller first saw the pod scheduled, by its own clock)
    overrides the condition's ``lastTransitionTime`` from the server's clock.
    """
    fast = waiting_outcome(pod, container=container, events=events)
    if fast is not None:
        return fast
    if container_started(pod, container) or pod_terminal(pod):
        return None
    scheduled = condition_any(pod, "PodScheduled")
    if pod is None or scheduled is None or scheduled.get("status") != "True":
        waited = (now - created_at).total_seconds()
        if waited < scheduling_timeout:
            return None
        detail = _one_line((scheduled or {}).get("message")) or "no node accepted the pod"
        return KubeOutcome(
            FailureClass.UNSCHEDULABLE,
            _with_events(f"not scheduled within {scheduling_timeout:g}s: {detail}", events),
            None,
            "the pod was never scheduled",
            raw_status(None, pod, events),
        )
    since = scheduled_at or parse_time(scheduled.get("lastTransitionTime")) or created_at
    waited = (now - since).total_seconds()
    if waited < start_timeout:
        return None
    waiting = waiting_state(pod, container) or {}
    reason = str(waiting.get("reason") or "no container status")
    message = _with_events(f"container not started within {start_timeout:g}s of scheduling (waiting: {reason})", events)
    # A mount of a missing Secret/ConfigMap keeps a pod in ContainerCreating for ever.
    mount_failed = any(e.get("reason") in ("FailedMount", "FailedAttachVolume") for e in events)
    return KubeOutcome(
        FailureClass.CONFIG_ERROR if mount_failed else FailureClass.API_ERROR,
        message,
        None,
        f"the container never started ({reason})",
        raw_status(None, pod, events),
    )


# -- at the end ------------------------------------------------------------------------


def classify_attempt(
    *,
    job: Obj | None,
    pod: Obj | None,
    events: Sequence[Obj] = (),
    container: str,
    memory_limited: bool = False,
    pod_gone: bool = False,
    job_gone: bool = False,
) -> KubeOutcome:
    """The outcome of a finished attempt (``pod`` is its latest pod, if any was seen)."""
    raw = raw_status(job, pod, events)
    finished = job_outcome(job)
    terminated = terminated_state(pod, container)
    exit_code = int(terminated["exitCode"]) if terminated and "exitCode" in terminated else None
    term_reason = str(terminated.get("reason") or "") if terminated else ""
    term_message = _one_line(terminated.get("message")) if terminated else ""
    pod_status = (pod or {}).get("status") or {}
    pod_reason = str(pod_status.get("reason") or "")
    disruption = condition(pod, "DisruptionTarget")
    deleting = bool(((pod or {}).get("metadata") or {}).get("deletionTimestamp"))
    no_code = None if exit_code is not None else "the container did not report an exit code"

    if finished is not None and not finished[0] and finished[1] == "DeadlineExceeded":
        return KubeOutcome(
            FailureClass.DEADLINE_EXCEEDED,
            f"Job exceeded activeDeadlineSeconds: {finished[2] or 'deadline passed'}",
            exit_code,
            no_code,
            raw,
        )
    if pod_reason == "Evicted" or (
        disruption and disruption.get("reason") in EVICTION_REASONS and pod_reason != "Terminated"
    ):
        detail = _one_line(pod_status.get("message")) or _one_line((disruption or {}).get("message"))
        return KubeOutcome(FailureClass.EVICTED, f"pod evicted: {detail or pod_reason}", exit_code, no_code, raw)
    if (
        term_reason == "ContainerStatusUnknown"
        or pod_reason in ("NodeLost", "Terminated")
        or (disruption and disruption.get("reason") in NODE_LOSS_REASONS)
    ):
        detail = (
            _one_line((disruption or {}).get("message"))
            or term_message
            or _one_line(pod_status.get("message"))
            or term_reason
            or pod_reason
        )
        # Exit code 137 of ContainerStatusUnknown is made up by the kubelet, not the phase's.
        code = None if term_reason == "ContainerStatusUnknown" else exit_code
        return KubeOutcome(
            FailureClass.NODE_LOST,
            f"node lost: {detail}",
            code,
            None if code is not None else "the node stopped reporting the container",
            raw,
        )
    if term_reason == "OOMKilled":
        return KubeOutcome(
            FailureClass.OOM_KILLED,
            f"out of memory: container OOMKilled (exit code {exit_code})",
            exit_code,
            no_code,
            raw,
        )
    fast = waiting_outcome(pod, container=container, events=events)
    if fast is not None and terminated is None:
        return KubeOutcome(fast.failure_class, fast.message, None, fast.exit_code_reason, raw)
    if pod_gone or deleting:
        detail = f" after exit code {exit_code}" if exit_code is not None else " before it finished"
        return KubeOutcome(FailureClass.POD_DELETED, f"pod deleted{detail}", exit_code, no_code, raw)
    if job_gone and terminated is None:
        return KubeOutcome(
            FailureClass.POD_DELETED,
            "Job deleted before the pod finished",
            None,
            "the Job was deleted by someone else",
            raw,
        )
    if exit_code == SIGKILL_EXIT and memory_limited:
        return KubeOutcome(
            FailureClass.OOM_KILLED,
            "killed by SIGKILL (exit code 137) with a memory limit set and no deletion: out of memory",
            exit_code,
            None,
            raw,
        )
    if exit_code is not None and exit_code != 0:
        detail = f": {term_message}" if term_message else ""
        return KubeOutcome(
            FailureClass.EXIT_CODE,
            f"exit code {exit_code} ({term_reason or 'Error'}){detail}",
            exit_code,
            None,
            raw,
        )
    # A container that exited 0 by itself ("Completed") succeeded even before the kubelet
    # moves the pod to Succeeded and the Job controller adds its condition (both lag).
    still_settling = finished is None and pod_phase(pod) not in ("Failed", "Unknown")
    if exit_code == 0 and (pod_phase(pod) == "Succeeded" or (finished is not None and finished[0])
                           or (term_reason == "Completed" and still_settling)):
        return KubeOutcome(FailureClass.SUCCEEDED, "exit code 0", 0, None, None)
    if condition_any(pod, "PodScheduled") and not condition(pod, "PodScheduled"):
        detail = _one_line((condition_any(pod, "PodScheduled") or {}).get("message"))
        return KubeOutcome(
            FailureClass.UNSCHEDULABLE,
            _with_events(f"never scheduled: {detail}", events),
            None,
            "the pod was never scheduled",
            raw,
        )
    if pod is None and finished is None:
        return KubeOutcome(
            FailureClass.API_ERROR,
            "no pod was ever seen for the Job and the Job has no final condition",
            None,
            "no pod was observed",
            raw,
        )
    parts = [f"phase={pod_phase(pod)}", f"job={finished}", f"container={term_reason or 'none'}"]
    return KubeOutcome(
        FailureClass.API_ERROR,
        _with_events("unexpected Kubernetes state: " + ", ".join(parts), events),
        exit_code,
        no_code,
        raw,
    )
