"""What the classification rules look at: the facts of an attempt, read once, and the outcome.

``AttemptFacts.observe`` reads the Job, the pod and the Events of a finished attempt
into one frozen value, so no rule reads a dict twice or differently from another;
``KubeOutcome`` is what a rule decides. The two early verdicts (a container that can
never start, a pod refused at creation) live here too: the rules and the pending-time
checks both use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchdrain.classify.readers import (
    Obj,
    condition,
    job_outcome,
    one_line,
    pod_phase,
    raw_status,
    terminated_state,
    waiting_state,
)
from batchdrain.domain import FailureClass

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
# The Job controller's Warning when the API server refuses a pod it creates: reason
# ``FailedCreatePodReason`` and message "Error creating: <the API error>"
# (kubernetes pkg/controller/controller_utils.go, RealPodControl.createPods).
FAILED_CREATE = "FailedCreate"
_FAILED_CREATE_PREFIX = "Error creating: "
# The runtime could not start the process (runc could not exec the command...): the
# kubelet reports it terminated with this reason and an exit code (128) of its own.
START_ERROR = "StartError"


@dataclass(frozen=True)
class KubeOutcome:
    failure_class: FailureClass
    message: str
    exit_code: int | None
    exit_code_reason: str | None = None
    raw_status: Obj | None = None
    # False when the platform, not the phase, failed (the Job controller made no pod):
    # the attempt is recorded but not counted against the phase's attempts.
    charged: bool = True


def waiting_outcome(pod: Obj | None, *, container: str, events: Sequence[Obj] = ()) -> KubeOutcome | None:
    """Fail fast on waiting states that never heal by themselves (bad image, bad config).

    It lives with the final rules because it is one of them (``never_started``) as well
    as the first check made while an attempt is still pending.
    """
    waiting = waiting_state(pod, container)
    if waiting is None:
        return None
    reason = str(waiting.get("reason") or "")
    detail = one_line(waiting.get("message"))
    text = f"{reason}: {detail}" if detail else reason
    if reason in IMAGE_PULL_REASONS:
        failure_class, what = FailureClass.IMAGE_PULL, "image could not be pulled"
    elif reason in CONFIG_REASONS:
        failure_class, what = FailureClass.CONFIG_ERROR, "container could not be created"
    else:
        return None
    return KubeOutcome(
        failure_class,
        f"{what}: {text}",
        None,
        f"the container never started ({reason})",
        raw_status(None, pod, events),
    )


def refused_outcome(job: Obj | None, events: Sequence[Obj]) -> KubeOutcome | None:
    """The API server refused the Job's pod at admission, as the Job's ``FailedCreate`` Events say.

    A ResourceQuota, a LimitRange, PodSecurity or a webhook refusing the pod leaves no pod
    at all, so no pod status tells it: only these Events on the Job do, and the Job
    controller goes on retrying for ever. Like ``waiting_outcome`` it is one of the final
    rules (``admission_refused``) and the check made while a Job has no pod yet.
    """
    refusals = [e for e in events if e.get("reason") == FAILED_CREATE]
    if not refusals:
        return None
    latest = max(refusals, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    text = " ".join(str(latest.get("message") or "").split()).removeprefix(_FAILED_CREATE_PREFIX)
    return KubeOutcome(
        FailureClass.ADMISSION_REFUSED,
        f"pod refused at creation: {text or 'the Job controller gave no reason'}",
        None,
        "the pod was never created: the API server refused it",
        raw_status(job, None, events),
    )


# -- the facts -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AttemptFacts:
    """What the rules look at, read once from the attempt's last Job, Pod and Events.

    The first seven fields are the inputs of ``classify_attempt``; the rest are derived
    by ``observe`` (the only constructor meant to be used) so no rule reads a dict
    twice or reads it differently from another rule.
    """

    job: Obj | None
    pod: Obj | None
    events: tuple[Obj, ...]
    container: str
    memory_limited: bool
    pod_gone: bool
    job_gone: bool
    # -- derived
    raw: Obj
    finished: tuple[bool, str | None, str | None] | None  # job_outcome(job)
    terminated: Obj | None  # the container's terminated state, current or last
    exit_code: int | None
    no_code: str | None  # the exit_code_reason to use when the exit code is the container's
    term_reason: str
    term_message: str
    phase: str | None
    pod_reason: str
    pod_message: str
    disruption_reason: str  # of a DisruptionTarget condition that is "True"; "" without one
    disruption_message: str
    deleting: bool  # the pod has a deletionTimestamp

    @classmethod
    def observe(
        cls,
        *,
        job: Obj | None,
        pod: Obj | None,
        events: Sequence[Obj] = (),
        container: str,
        memory_limited: bool = False,
        pod_gone: bool = False,
        job_gone: bool = False,
    ) -> AttemptFacts:
        terminated = terminated_state(pod, container)
        exit_code = int(terminated["exitCode"]) if terminated and "exitCode" in terminated else None
        pod_status = (pod or {}).get("status") or {}
        disruption = condition(pod, "DisruptionTarget") or {}
        return cls(
            job=job,
            pod=pod,
            events=tuple(events),
            container=container,
            memory_limited=memory_limited,
            pod_gone=pod_gone,
            job_gone=job_gone,
            raw=raw_status(job, pod, events),
            finished=job_outcome(job),
            terminated=terminated,
            exit_code=exit_code,
            no_code=None if exit_code is not None else "the container did not report an exit code",
            term_reason=str((terminated or {}).get("reason") or ""),
            term_message=one_line((terminated or {}).get("message")),
            phase=pod_phase(pod),
            pod_reason=str(pod_status.get("reason") or ""),
            pod_message=one_line(pod_status.get("message")),
            disruption_reason=str(disruption.get("reason") or ""),
            disruption_message=one_line(disruption.get("message")),
            deleting=bool(((pod or {}).get("metadata") or {}).get("deletionTimestamp")),
        )
