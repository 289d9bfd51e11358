"""A Job in a Kueue queue: admitted or not, and taken back after admission (preempted).

Kueue holds a Job suspended (``spec.suspend``) until its Workload fits the ClusterQueue's
quota, then un-suspends it; to preempt or evict it, it suspends it again, which makes the
Job controller delete its pod, and records a ``Stopped`` Event on the Job saying why. Both
are the platform's decisions, not the phase's: the wait for admission never counts against
the scheduling timeout, and a preempted attempt is ``preempted`` (transient, not charged).
"""

from __future__ import annotations

from collections.abc import Sequence

from batchdrain.classify.facts import KubeOutcome
from batchdrain.classify.readers import Obj, one_line, raw_status
from batchdrain.domain import FailureClass

# The reason of the Event Kueue records on a Job it stops (jobframework.ReasonStopped).
KUEUE_STOPPED = "Stopped"
# On the Job from Kueue's suspend until the rest of its stop is done (job.StoppingAnnotation).
KUEUE_STOPPING = "kueue.x-k8s.io/stopping"


def suspended(job: Obj | None) -> bool:
    """The Job is held suspended: waiting for (or taken back from) Kueue's admission."""
    return bool(((job or {}).get("spec") or {}).get("suspend"))


def kueue_stopping(job: Obj | None) -> bool:
    """Kueue has suspended the Job and not finished stopping it: its status and pod-set
    patches, and after them the ``Stopped`` Event saying why, are still to come."""
    return bool((((job or {}).get("metadata") or {}).get("annotations") or {}).get(KUEUE_STOPPING))


def not_admitted_outcome(*, queue: str, waited: float, limit: float, job: Obj | None) -> KubeOutcome | None:
    """A Job not admitted within ``--admission-timeout-seconds`` (0: no limit), or None."""
    if limit <= 0 or waited < limit:
        return None
    return KubeOutcome(
        FailureClass.UNSCHEDULABLE,
        f"not admitted by Kueue within {limit:g}s (LocalQueue {queue}): its ClusterQueue had no quota "
        "for it, or the LocalQueue does not exist",
        None,
        "Kueue never admitted the Job",
        raw_status(job, None),
    )


def preempted_outcome(job: Obj | None, events: Sequence[Obj]) -> KubeOutcome:
    """The Job suspended again after its admission: what Kueue said when it stopped it."""
    stopped = [e for e in events if e.get("reason") == KUEUE_STOPPED]
    said = one_line(stopped[-1].get("message")) if stopped else ""
    why = said or "Kueue suspended the Job again after admitting it (preempted or evicted)"
    return KubeOutcome(
        FailureClass.PREEMPTED,
        f"preempted by Kueue: {why} (not charged; retried)",
        None,
        "Kueue took the Job's quota back",
        raw_status(job, None, events),
        charged=False,
    )
