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
from batchdrain.executors.kubernetes.live import LiveAttempt, deadline_for
from batchdrain.executors.kubernetes.watches import resource_version
from batchdrain.kube import KubeObject


def note_admission(attempt: LiveAttempt, pod: KubeObject | None, on_update: AttemptUpdate) -> None:
    """Record the Job's admission, or its preemption after admission, from what was watched.

    The Job and its pod come on two watches: a pod is proof of the admission even while
    the Job's own update is still on its way.
    """
    job = attempt.tracker.job
    if attempt.queue is None or job is None or attempt.tracker.job_gone:
        return
    if pod is not None and attempt.pod_version is None:
        attempt.pod_version = resource_version(pod)
    if not suspended(job):
        attempt.job_resumed = True
    elif taken_back(attempt, job):
        attempt.preempted = True
    if attempt.admitted_at is None and (attempt.job_resumed or pod is not None):
        attempt.admitted_at = utcnow()
        attempt.deadline = deadline_for(attempt.launch, attempt.admitted_at)
        on_update(AttemptProgress(admitted_at=attempt.admitted_at))


def taken_back(attempt: LiveAttempt, job: KubeObject | None) -> bool:
    """The Job is suspended again after its admission (Kueue preempted or evicted it).

    Either a version of it was seen resumed before this suspended one (the tracker only
    moves to newer versions), or, when two updates fell between looks, this version is
    newer than the first sighting of its pod, which only a resumed Job makes.
    """
    if not suspended(job):
        return False
    if attempt.job_resumed:
        return True
    version = resource_version(job) if job is not None else None
    return version is not None and attempt.pod_version is not None and version > attempt.pod_version


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
