"""One path for taking over a Job that already exists.

Two ways lead here: a create answered AlreadyExists (the deterministic name means a
previous controller created this very attempt), and an orphan of a dead session found
by the drain loop. Either way the Job is read, its pods (which predate our watch's
events) are read once, and the attempt resumes its stored logs after the bytes
already there instead of starting them again.
"""

from __future__ import annotations

import math

from batchdrain.classify.kube import parse_time, suspended
from batchdrain.domain import utcnow
from batchdrain.executors.base import AttemptLaunch
from batchdrain.executors.kubernetes.live import LiveAttempt, deadline_for
from batchdrain.executors.kubernetes.watches import Tracker
from batchdrain.jobspec import KUEUE_QUEUE_LABEL, LABEL_ATTEMPT, LABEL_PHASE, LABEL_RUN, label_value, session_selector
from batchdrain.kube import KubeApi, KubeObject


def attempt_selector(launch: AttemptLaunch) -> str:
    identity = launch.identity
    return ",".join([
        session_selector(identity.session_id),
        f"{LABEL_RUN}={label_value(identity.run_id)}",
        f"{LABEL_PHASE}={label_value(identity.phase_id)}",
        f"{LABEL_ATTEMPT}={identity.attempt}",
    ])


def take_over(api: KubeApi, *, launch: AttemptLaunch, job: KubeObject, tracker: Tracker,
              note: str) -> LiveAttempt:
    """The attempt of an existing Job, its pods seeded, resuming its stored logs.

    Raises ``KubeError`` when the pods cannot be listed.
    """
    meta = job.get("metadata") or {}
    created_at = parse_time(meta.get("creationTimestamp")) or utcnow()
    tracker.on_job("ADDED", job)
    pods, _ = api.list_pods(attempt_selector(launch))
    for pod in pods:
        tracker.on_pod("ADDED", pod)
    queue = (meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    admitted_at = None
    if queue and not suspended(job):
        # Admitted before we came: the Job controller stamps startTime when it resumes.
        admitted_at = parse_time((job.get("status") or {}).get("startTime")) or created_at
    waiting = bool(queue) and admitted_at is None
    return LiveAttempt(
        launch=launch, job_name=tracker.job_name, tracker=tracker, created_at=created_at,
        deadline=math.inf if waiting else deadline_for(launch, admitted_at or created_at), resume_logs=True,
        notes=[note], queue=queue or None, admitted_at=admitted_at, job_resumed=admitted_at is not None,
    )
