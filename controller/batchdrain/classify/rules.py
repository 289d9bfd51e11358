"""A finished attempt's outcome: an ordered table of rules over one value of facts.

Kubernetes reports why a pod ended in several places that disagree in edge cases: Job
conditions (``Failed``/``FailureTarget`` with reason ``DeadlineExceeded``), pod
``status.reason`` (``Evicted``), the pod's ``DisruptionTarget`` condition (eviction
API, preemption, taint manager, pod GC), container states (``OOMKilled``,
``ContainerStatusUnknown``, ``StartError``, waiting ``ImagePullBackOff``) and Events
(the pod's, or the Job's ``FailedCreate`` when no pod was ever admitted). This is the
shape of the Job controller's pod failure policy (``pod_failure_policy.go``): the facts
are read once into ``AttemptFacts``, each rule is a small named function that either
decides or passes, and ``RULES`` is tried in order, first match wins. The order is the
precedence: the cause that explains the others wins (a Job past its deadline has its
pod deleted; that deletion is not ``pod_deleted``). A new case is a new rule in its
place in the table, with its own row in ``tests/unit/test_classify_rules.py``.

An unexpected combination is never "Unknown error": the last rule, which always
matches, classes it ``api_error`` with the raw status attached for a human to read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from batchdrain.classify.facts import (
    EVICTION_REASONS,
    NODE_LOSS_REASONS,
    SIGKILL_EXIT,
    START_ERROR,
    AttemptFacts,
    KubeOutcome,
    refused_outcome,
    waiting_outcome,
)
from batchdrain.classify.readers import Obj, condition, condition_any, one_line, parse_time, with_events
from batchdrain.domain import FailureClass

Rule = Callable[[AttemptFacts], KubeOutcome | None]


# -- the rules, in the order of RULES --------------------------------------------------


def admission_refused(f: AttemptFacts) -> KubeOutcome | None:
    """No pod was ever created because the API server refused it: that explains the rest
    (a Job past its deadline, a Job deleted while waiting)."""
    if f.pod is not None:
        return None
    refused = refused_outcome(f.job, f.events)
    if refused is None:
        return None
    return KubeOutcome(refused.failure_class, refused.message, None, refused.exit_code_reason, f.raw)


def deadline_exceeded(f: AttemptFacts) -> KubeOutcome | None:
    """The Job failed past activeDeadlineSeconds: that caused whatever happened to the pod."""
    if f.finished is None or f.finished[0] or f.finished[1] != "DeadlineExceeded":
        return None
    return KubeOutcome(
        FailureClass.DEADLINE_EXCEEDED,
        f"Job exceeded activeDeadlineSeconds: {f.finished[2] or 'deadline passed'}",
        f.exit_code,
        f.no_code,
        f.raw,
    )


def evicted(f: AttemptFacts) -> KubeOutcome | None:
    """Evicted under node pressure by the kubelet, through the eviction API, or preempted."""
    # Pod reason "Terminated" is the kubelet's graceful node shutdown (also TerminationByKubelet):
    # node_lost, the next rule.
    by_disruption = f.disruption_reason in EVICTION_REASONS and f.pod_reason != "Terminated"
    if f.pod_reason != "Evicted" and not by_disruption:
        return None
    detail = f.pod_message or f.disruption_message
    return KubeOutcome(FailureClass.EVICTED, f"pod evicted: {detail or f.pod_reason}", f.exit_code, f.no_code, f.raw)


def node_lost(f: AttemptFacts) -> KubeOutcome | None:
    """The node went away or stopped reporting: nothing the phase did."""
    if not (
        f.term_reason == "ContainerStatusUnknown"
        or f.pod_reason in ("NodeLost", "Terminated")
        or f.disruption_reason in NODE_LOSS_REASONS
    ):
        return None
    detail = f.disruption_message or f.term_message or f.pod_message or f.term_reason or f.pod_reason
    # Exit code 137 of ContainerStatusUnknown is made up by the kubelet, not the phase's.
    code = None if f.term_reason == "ContainerStatusUnknown" else f.exit_code
    return KubeOutcome(
        FailureClass.NODE_LOST,
        f"node lost: {detail}",
        code,
        None if code is not None else "the node stopped reporting the container",
        f.raw,
    )


def oom_killed(f: AttemptFacts) -> KubeOutcome | None:
    """The kubelet says OOMKilled: believed whatever the exit code (even 0)."""
    if f.term_reason != "OOMKilled":
        return None
    return KubeOutcome(
        FailureClass.OOM_KILLED,
        f"out of memory: container OOMKilled (exit code {f.exit_code})",
        f.exit_code,
        f.no_code,
        f.raw,
    )


def start_error(f: AttemptFacts) -> KubeOutcome | None:
    """The runtime could not start the command (a missing binary...): the phase never ran.

    The kubelet reports ``terminated`` with reason ``StartError``, exit code 128 and a
    ``startedAt`` of the epoch; that code is the runtime's, not the phase's, so there is
    no exit code. ``launch_error``, as the local executor classes a command that does
    not exist; the runtime's message says what was missing.
    """
    if f.term_reason != START_ERROR:
        return None
    code = f"; exit code {f.exit_code} is the runtime's" if f.exit_code is not None else ""
    return KubeOutcome(
        FailureClass.LAUNCH_ERROR,
        f"the container never started: {f.term_message or START_ERROR}",
        None,
        f"the container never started ({START_ERROR}{code})",
        f.raw,
    )


def never_started(f: AttemptFacts) -> KubeOutcome | None:
    """A bad image or bad config kept the container from ever running (see ``waiting_outcome``)."""
    fast = waiting_outcome(f.pod, container=f.container, events=f.events)
    if fast is None or f.terminated is not None:
        return None
    return KubeOutcome(fast.failure_class, fast.message, None, fast.exit_code_reason, f.raw)


def _deletion_requested_at(pod: Obj | None) -> dt.datetime | None:
    """When the pod's deletion was asked for: its deletionTimestamp less the grace period."""
    meta = (pod or {}).get("metadata") or {}
    stamp = parse_time(meta.get("deletionTimestamp"))
    if stamp is None:
        return None
    return stamp - dt.timedelta(seconds=int(meta.get("deletionGracePeriodSeconds") or 0))


def completed_before_deletion(f: AttemptFacts) -> KubeOutcome | None:
    """Exit 0 ("Completed") before anyone deleted the pod or the Job: the phase succeeded.

    A namespace deleted (or a Job removed) after the container ended takes nothing from
    a run that already finished with its whole output. The finish must be a whole
    second before the deletion was requested: a phase that exits 0 on the SIGTERM of a
    deletion finishes in the same second or later and stays ``pod_deleted``.
    """
    if f.exit_code != 0 or f.term_reason != "Completed" or not (f.pod_gone or f.deleting or f.job_gone):
        return None
    finished = parse_time((f.terminated or {}).get("finishedAt"))
    requested = _deletion_requested_at(f.pod)
    if requested is not None and (finished is None or finished >= requested):
        return None
    return KubeOutcome(FailureClass.SUCCEEDED, "exit code 0 (the pod was removed after it completed)", 0, None, None)


def pod_deleted(f: AttemptFacts) -> KubeOutcome | None:
    """Someone deleted the pod, and none of the platform's reasons above explains it."""
    if not (f.pod_gone or f.deleting):
        return None
    detail = f" after exit code {f.exit_code}" if f.exit_code is not None else " before it finished"
    return KubeOutcome(FailureClass.POD_DELETED, f"pod deleted{detail}", f.exit_code, f.no_code, f.raw)


def job_deleted(f: AttemptFacts) -> KubeOutcome | None:
    """Someone deleted the Job (and so its pod) before the container finished."""
    if not f.job_gone or f.terminated is not None:
        return None
    return KubeOutcome(
        FailureClass.POD_DELETED,
        "Job deleted before the pod finished",
        None,
        "the Job was deleted by someone else",
        f.raw,
    )


def sigkill_under_memory_limit(f: AttemptFacts) -> KubeOutcome | None:
    """SIGKILL with a memory limit and no deletion: the OOM killer, even when the reason was lost."""
    if f.exit_code != SIGKILL_EXIT or not f.memory_limited:
        return None
    return KubeOutcome(
        FailureClass.OOM_KILLED,
        "killed by SIGKILL (exit code 137) with a memory limit set and no deletion: out of memory",
        f.exit_code,
        None,
        f.raw,
    )


def nonzero_exit(f: AttemptFacts) -> KubeOutcome | None:
    """The phase's own failure: its exit code, and its termination message when it left one."""
    if f.exit_code is None or f.exit_code == 0:
        return None
    detail = f": {f.term_message}" if f.term_message else ""
    return KubeOutcome(
        FailureClass.EXIT_CODE,
        f"exit code {f.exit_code} ({f.term_reason or 'Error'}){detail}",
        f.exit_code,
        None,
        f.raw,
    )


def succeeded(f: AttemptFacts) -> KubeOutcome | None:
    """Exit code 0, confirmed by the pod phase, the Job, or the kubelet's "Completed"."""
    if f.exit_code != 0:
        return None
    # A container that exited 0 by itself ("Completed") succeeded even before the kubelet
    # moves the pod to Succeeded and the Job controller adds its condition (both lag).
    still_settling = f.finished is None and f.phase not in ("Failed", "Unknown")
    job_succeeded = f.finished is not None and f.finished[0]
    if not (f.phase == "Succeeded" or job_succeeded or (f.term_reason == "Completed" and still_settling)):
        return None
    return KubeOutcome(FailureClass.SUCCEEDED, "exit code 0", 0, None, None)


def never_scheduled(f: AttemptFacts) -> KubeOutcome | None:
    """The pod has a PodScheduled condition that never became "True"."""
    scheduled = condition_any(f.pod, "PodScheduled")
    if not scheduled or condition(f.pod, "PodScheduled"):
        return None
    return KubeOutcome(
        FailureClass.UNSCHEDULABLE,
        with_events(f"never scheduled: {one_line(scheduled.get('message'))}", f.events),
        None,
        "the pod was never scheduled",
        f.raw,
    )


def no_pod_seen(f: AttemptFacts) -> KubeOutcome | None:
    """Neither a pod nor a final Job condition: nothing to classify by."""
    if f.pod is not None or f.finished is not None:
        return None
    return KubeOutcome(
        FailureClass.API_ERROR,
        "no pod was ever seen for the Job and the Job has no final condition",
        None,
        "no pod was observed",
        f.raw,
    )


def unexpected_state(f: AttemptFacts) -> KubeOutcome:
    """The last rule, always matching: a state no rule above foresaw, with the raw status kept."""
    parts = [f"phase={f.phase}", f"job={f.finished}", f"container={f.term_reason or 'none'}"]
    return KubeOutcome(
        FailureClass.API_ERROR,
        with_events("unexpected Kubernetes state: " + ", ".join(parts), f.events),
        f.exit_code,
        f.no_code,
        f.raw,
    )


# First match wins; ``unexpected_state`` follows them all (it is typed as always matching).
RULES: tuple[Rule, ...] = (
    admission_refused,
    deadline_exceeded,
    evicted,
    node_lost,
    oom_killed,
    start_error,
    never_started,
    completed_before_deletion,
    pod_deleted,
    job_deleted,
    sigkill_under_memory_limit,
    nonzero_exit,
    succeeded,
    never_scheduled,
    no_pod_seen,
)


def decide(facts: AttemptFacts) -> KubeOutcome:
    """The outcome of the first rule that matches the facts."""
    for rule in RULES:
        outcome = rule(facts)
        if outcome is not None:
            return outcome
    return unexpected_state(facts)


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
    return decide(
        AttemptFacts.observe(
            job=job,
            pod=pod,
            events=events,
            container=container,
            memory_limited=memory_limited,
            pod_gone=pod_gone,
            job_gone=job_gone,
        )
    )


# The facts and the outcome type are the rules' vocabulary: importable from here too.
__all__ = ["RULES", "AttemptFacts", "KubeOutcome", "Rule", "classify_attempt", "decide", "unexpected_state"]
