"""An attempt still pending: when to give up on a pod that does not get going.

Apart from the final rules because it is asked over and over while the attempt waits,
with a clock, and "not yet" is its usual answer; the final rules always decide. The
checks run in this order: a waiting state that never heals fails at once; a container
that started (or a pod that ended) is past pending; otherwise the pod has either not
been scheduled (the scheduling limit applies) or not started since it was (the start
limit applies). A Job with no pod at all is neither: the Job controller has not made
the pod yet (a refused pod is told by the Job's Events, read elsewhere), which is the
control plane being behind, not the phase being unschedulable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from batchdrain.classify.facts import KubeOutcome, waiting_outcome
from batchdrain.classify.readers import (
    Obj,
    condition_any,
    container_started,
    one_line,
    parse_time,
    pod_terminal,
    raw_status,
    waiting_state,
    with_events,
)
from batchdrain.domain import FailureClass

# A mount of a missing Secret/ConfigMap keeps a pod in ContainerCreating for ever.
MOUNT_FAILURE_REASONS = ("FailedMount", "FailedAttachVolume")


def pending_outcome(
    pod: Obj | None,
    *,
    container: str,
    now: dt.datetime,
    created_at: dt.datetime,
    scheduling_timeout: float,
    start_timeout: float,
    scheduled_at: dt.datetime | None = None,
    pod_seen_at: dt.datetime | None = None,
    events: Sequence[Obj] = (),
) -> KubeOutcome | None:
    """Give up on a pod that is not scheduled, or not started, within its time limit.

    The two limits are separate because they mean different things: unschedulable is
    a capacity or constraint problem, slow to start is a node, volume or image problem.
    ``scheduled_at`` (when the caller first saw the pod scheduled, by its own clock)
    overrides the condition's ``lastTransitionTime`` from the server's clock;
    ``pod_seen_at`` (when it first saw the pod) starts the scheduling limit, so the time
    a Job waited for the Job controller to make its pod is not counted as unschedulable.
    Without a pod the limit is both limits together (``podless_limit``).
    """
    fast = waiting_outcome(pod, container=container, events=events)
    if fast is not None:
        return fast
    if container_started(pod, container) or pod_terminal(pod):
        return None
    if pod is None:
        return _no_pod(waited=(now - created_at).total_seconds(),
                       limit=podless_limit(scheduling_timeout, start_timeout), events=events)
    scheduled = condition_any(pod, "PodScheduled")
    if scheduled is None or scheduled.get("status") != "True":
        waited = (now - max(pod_seen_at or created_at, created_at)).total_seconds()
        return _not_scheduled(pod, scheduled, waited=waited, limit=scheduling_timeout, events=events)
    since = scheduled_at or parse_time(scheduled.get("lastTransitionTime")) or created_at
    waited = (now - since).total_seconds()
    return _not_started(pod, container, waited=waited, limit=start_timeout, events=events)


def podless_limit(scheduling_timeout: float, start_timeout: float) -> float:
    """How long a Job may have no pod before the control plane is given up on.

    Both limits together: the longest a pod may take to be scheduled and started, so a
    Job controller that is merely behind (a deep work queue at high parallelism) is waited
    for, and one that is not running is not waited for without end.
    """
    return scheduling_timeout + start_timeout


def _no_pod(*, waited: float, limit: float, events: Sequence[Obj]) -> KubeOutcome | None:
    if waited < limit:
        return None
    return KubeOutcome(
        FailureClass.API_ERROR,
        with_events(f"no pod made for the Job within {limit:g}s and no FailedCreate Event: the Job "
                    "controller is behind or not running (not charged to the phase)", events),
        None,
        "the Job controller made no pod",
        raw_status(None, None, events),
        charged=False,
    )


def _not_scheduled(
    pod: Obj | None, scheduled: Obj | None, *, waited: float, limit: float, events: Sequence[Obj]
) -> KubeOutcome | None:
    if waited < limit:
        return None
    detail = one_line((scheduled or {}).get("message")) or "no node accepted the pod"
    return KubeOutcome(
        FailureClass.UNSCHEDULABLE,
        with_events(f"not scheduled within {limit:g}s: {detail}", events),
        None,
        "the pod was never scheduled",
        raw_status(None, pod, events),
    )


def _not_started(
    pod: Obj | None, container: str, *, waited: float, limit: float, events: Sequence[Obj]
) -> KubeOutcome | None:
    if waited < limit:
        return None
    reason = str((waiting_state(pod, container) or {}).get("reason") or "no container status")
    message = with_events(f"container not started within {limit:g}s of scheduling (waiting: {reason})", events)
    mount_failed = any(e.get("reason") in MOUNT_FAILURE_REASONS for e in events)
    return KubeOutcome(
        FailureClass.CONFIG_ERROR if mount_failed else FailureClass.API_ERROR,
        message,
        None,
        f"the container never started ({reason})",
        raw_status(None, pod, events),
    )
