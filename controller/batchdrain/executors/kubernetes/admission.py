"""Kueue admission of an attempt's Job, as the supervisor sees it on each look.

A Job created in a LocalQueue is suspended: it has no pod, and no clock of ours runs but
the admission timeout (off by default). When Kueue un-suspends it, the attempt is
admitted: ``admitted_at`` is recorded (and reported at once, so the queue wait survives
a crash), and from then on the scheduling, start and deadline limits count. Suspended
again after that is Kueue taking the quota back: the attempt is preempted.
"""

from __future__ import annotations

from batchdrain.classify.kube import KubeOutcome, not_admitted_outcome, suspended
from batchdrain.domain import AttemptProgress, utcnow
from batchdrain.executors.base import AttemptUpdate
from batchdrain.executors.kubernetes.adoption import deadline_for
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.kube import KubeObject


def note_admission(attempt: LiveAttempt, pod: KubeObject | None, on_update: AttemptUpdate) -> None:
    """Record the Job's admission, or its preemption after admission, from what was watched.

    The Job and its pod come on two watches: a pod is proof of the admission even while
    the Job's own update is still on its way. Preempted means a version of the Job seen
    suspended after one seen resumed (the tracker only ever moves to newer versions).
    """
    job = attempt.tracker.job
    if attempt.queue is None or job is None or attempt.tracker.job_gone:
        return
    if not suspended(job):
        attempt.job_resumed = True
    elif attempt.job_resumed:
        attempt.preempted = True
    if attempt.admitted_at is None and (attempt.job_resumed or pod is not None):
        attempt.admitted_at = utcnow()
        attempt.deadline = deadline_for(attempt.launch, attempt.admitted_at)
        on_update(AttemptProgress(admitted_at=attempt.admitted_at))


def admission_verdict(attempt: LiveAttempt, timeout_seconds: float) -> KubeOutcome | None:
    """Give up on a Job Kueue has not admitted within ``timeout_seconds`` (0: never)."""
    if not attempt.awaiting_admission or attempt.queue is None:
        return None
    waited = (utcnow() - attempt.created_at).total_seconds()
    return not_admitted_outcome(queue=attempt.queue, waited=waited, limit=timeout_seconds,
                                job=attempt.tracker.job)


def admission_sleep(attempt: LiveAttempt, timeout_seconds: float, idle_seconds: float) -> float:
    """How long an attempt awaiting admission may sleep: the Job watch wakes it when admitted."""
    if timeout_seconds <= 0:
        return idle_seconds
    left = timeout_seconds - (utcnow() - attempt.created_at).total_seconds()
    return max(min(idle_seconds, left), 0.0)
