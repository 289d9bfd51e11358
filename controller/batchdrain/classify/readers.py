"""Pure readers of Job, Pod and Event dicts: one fact each, no policy.

They exist apart from the rules so that the rules read as decisions ("a pod evicted by
the kubelet is ``evicted``") and not as dict walking, and so the executor can ask the
same questions (has the container started? what image ran?) with the same answers.
Every reader accepts ``None`` for an object not seen (yet) and never raises on a
missing key: the API server leaves out empty fields.

Condition statuses are the strings "True"/"False"/"Unknown" and are compared with
``== "True"`` ("False" is truthy).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

Obj = dict[str, Any]

EVENTS_IN_MESSAGE = 3


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


def job_synced(job: Obj | None) -> bool:
    """The Job controller has synced the Job at least once (it stamps ``status.startTime``
    on its first sync of a Job that is not suspended, before it makes or fails to make
    the pod). Before that there is neither a pod nor a ``FailedCreate`` Event to look for."""
    return bool(((job or {}).get("status") or {}).get("startTime"))


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


# A container that never started (StartError) reports startedAt 1970-01-01: the zero
# time of the runtime, not a moment anything happened.
_NO_TIME_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _real_time(value: object) -> dt.datetime | None:
    moment = parse_time(value)
    return moment if moment is not None and moment >= _NO_TIME_BEFORE else None


def container_times(pod: Obj | None, container: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(started, finished) of the container, as the kubelet reported them (zero times dropped)."""
    state = (container_status(pod, container) or {}).get("state") or {}
    running = state.get("running") or {}
    terminated = state.get("terminated") or {}
    started = _real_time(terminated.get("startedAt") or running.get("startedAt"))
    return started, _real_time(terminated.get("finishedAt"))


def container_seconds(*, started: dt.datetime | None, finished: dt.datetime | None,
                      seen_started: dt.datetime | None, seen_finished: dt.datetime | None,
                      within: float | None = None) -> float | None:
    """How long the container ran, from the best clock there is; never negative.

    The kubelet's times are truncated to whole seconds, so the true duration lies within
    one second of their difference. That is the record from one second up: a whole
    number, whose error is under a second. Below it the kubelet says 0, which tells
    nothing, and the controller's own sightings (first seen running, first seen ended;
    sub-second, both late by the status lag) give the value, held within [0, 1).
    No start: no duration. ``within``: the attempt's whole span by the controller's
    clock; the container ran inside it, so a rounded-up second cannot make it longer
    (seen on the e2e cluster: 2.0 s for a container inside an attempt of 1.87 s).
    """
    seconds = _container_seconds(started, finished, seen_started, seen_finished)
    if seconds is None or within is None:
        return seconds
    return min(seconds, max(within, 0.0))


def _container_seconds(started: dt.datetime | None, finished: dt.datetime | None,
                       seen_started: dt.datetime | None, seen_finished: dt.datetime | None) -> float | None:
    if started is None:
        return None
    seen = (seen_finished - seen_started).total_seconds() if seen_started and seen_finished else None
    if finished is None:
        return max(seen, 0.0) if seen is not None else None
    whole = (finished - started).total_seconds()
    if whole >= 1.0 or seen is None:
        return max(whole, 0.0)
    return min(max(seen, 0.0), 0.999)


def image_of(pod: Obj | None, container: str) -> tuple[str | None, str | None]:
    """(image, digest) actually run; the digest comes from ``imageID`` (``...@sha256:...``)."""
    status = container_status(pod, container) or {}
    image = status.get("image")
    image_id = str(status.get("imageID") or "")
    digest = image_id.rsplit("@", 1)[1] if "@" in image_id else (image_id or None)
    return (str(image) if image else None), digest


def events_summary(events: Iterable[Obj], *, limit: int = EVENTS_IN_MESSAGE) -> str:
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


def with_events(message: str, events: Sequence[Obj]) -> str:
    """The message, followed by the latest warning events in brackets when there are any."""
    summary = events_summary(events)
    return f"{message} ({summary})" if summary else message


def one_line(text: object) -> str:
    """The last non-blank line: where Kubernetes and most programs put the final word."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
