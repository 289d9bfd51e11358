"""The Job's story in Events (``AttemptStarted``, ``Adopted``, ``Classified``, ``Leaked``).

``kubectl describe job`` shows them while the Job exists, and ``kubectl get events``
after the controller deleted it. Recording them is best effort: a failure is noted on
the attempt, never charged to it.
"""

from __future__ import annotations

from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.kube import KubeApi, KubeError, KubeObject


def job_reference(job: KubeObject) -> KubeObject:
    return {"apiVersion": "batch/v1", "kind": "Job", **job}


def tell(api: KubeApi, attempt: LiveAttempt, reason: str, message: str, *, warning: bool = False) -> KubeError | None:
    """Record an Event on the attempt's Job; a failure to do so is noted on the attempt (and returned)."""
    job = attempt.tracker.job or {"metadata": {"name": attempt.job_name}}
    try:
        api.create_event(involved=job_reference(job), reason=reason, message=message, warning=warning)
    except KubeError as err:
        attempt.notes.append(f"event {reason} not recorded: {type(err).__name__}: {err.message}")
        return err
    return None
