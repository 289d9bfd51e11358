"""The rule table of ``classify_attempt``: one row per rule, then the order between rules.

Each row is the smallest state that rule decides, and the test checks that it is the
*first* rule to match it, so a row also fails when a rule placed earlier starts to
claim the state. The order tests take states two rules match and check the earlier
one wins: the order of ``RULES`` is the precedence between causes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from batchdrain.classify import rules
from batchdrain.classify.kube import classify_attempt
from batchdrain.classify.rules import RULES, AttemptFacts, KubeOutcome, Rule, decide, unexpected_state
from batchdrain.domain import FailureClass

Obj = dict[str, Any]
FAILED = ("Failed", "True", "BackoffLimitExceeded")
SCHEDULED = {"type": "PodScheduled", "status": "True"}


def job(*conditions: tuple[str, str, str]) -> Obj:
    return {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": t, "status": s, "reason": r, "message": f"{r} happened"} for t, s, r in conditions]}}


def pod(state: Obj | None = None, *, phase: str = "Failed", reason: str | None = None, message: str | None = None,
        conditions: tuple[Obj, ...] = (SCHEDULED,), deleting: bool = False) -> Obj:
    status: Obj = {"phase": phase, "conditions": list(conditions)}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [{"name": "phase", "state": state}]
    meta: Obj = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:00:00Z"
    return {"metadata": meta, "status": status}


def term(code: int, reason: str = "Error", message: str | None = None, *, finished: str | None = None) -> Obj:
    state: Obj = {"exitCode": code, "reason": reason}
    if finished:
        state["finishedAt"] = finished
    if message:
        state["message"] = message
    return {"terminated": state}


def disruption(reason: str, message: str = "taken away") -> Obj:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}


RUNNING = {"running": {"startedAt": "2025-01-01T11:59:30Z"}}
QUOTA = "exceeded quota: bd-no-pods, requested: pods=1, used: pods=0, limited: pods=0"
# What the Job controller records when the API server refuses the pod it creates.
FAILED_CREATE = {"type": "Warning", "reason": "FailedCreate", "lastTimestamp": "2025-01-01T12:00:01Z",
                 "message": f'Error creating: pods "j-x7k2p" is forbidden: {QUOTA}'}
# What the kubelet reported on the e2e cluster (v1.33, containerd, runc) for a missing binary,
# with exit code 128 and startedAt 1970-01-01T00:00:00Z.
RUNC_ENOENT = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc '
               'create failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: '
               'no such file or directory: unknown')
UNSCHEDULED = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes available"}


def facts(j: Obj | None, p: Obj | None, **kw: Any) -> AttemptFacts:
    return AttemptFacts.observe(job=j, pod=p, container="phase", **kw)


def first_match(f: AttemptFacts) -> Rule:
    return next((rule for rule in RULES if rule(f) is not None), unexpected_state)


class Row(NamedTuple):
    rule: Rule
    facts: AttemptFacts
    failure_class: FailureClass
    message: str  # a fragment of the message
    exit_code: int | None


ROWS = [
    Row(rules.admission_refused, facts(job(), None, events=[FAILED_CREATE]),
        FailureClass.ADMISSION_REFUSED, f'pod refused at creation: pods "j-x7k2p" is forbidden: {QUOTA}', None),
    Row(rules.deadline_exceeded, facts(job(("Failed", "True", "DeadlineExceeded")), pod(term(143))),
        FailureClass.DEADLINE_EXCEEDED, "Job exceeded activeDeadlineSeconds: DeadlineExceeded happened", 143),
    Row(rules.evicted, facts(job(FAILED), pod(term(137), reason="Evicted", message="The node was low on memory.")),
        FailureClass.EVICTED, "pod evicted: The node was low on memory.", 137),
    Row(rules.node_lost, facts(job(FAILED), pod(term(137, "ContainerStatusUnknown", "could not be located"))),
        FailureClass.NODE_LOST, "node lost: could not be located", None),
    Row(rules.oom_killed, facts(job(FAILED), pod(term(137, "OOMKilled"))),
        FailureClass.OOM_KILLED, "out of memory: container OOMKilled (exit code 137)", 137),
    Row(rules.start_error, facts(job(FAILED), pod(term(128, "StartError", RUNC_ENOENT))),
        FailureClass.LAUNCH_ERROR, f"the container never started: {RUNC_ENOENT}", None),
    Row(rules.never_started,
        facts(job(FAILED), pod({"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
                               phase="Pending")),
        FailureClass.IMAGE_PULL, "image could not be pulled: ImagePullBackOff: no such image", None),
    Row(rules.completed_before_deletion,
        facts(None, pod(term(0, "Completed", finished="2025-01-01T11:59:58Z"), phase="Succeeded", deleting=True)),
        FailureClass.SUCCEEDED, "exit code 0 (the pod was removed after it completed)", 0),
    Row(rules.pod_deleted, facts(None, pod(RUNNING, phase="Running"), pod_gone=True),
        FailureClass.POD_DELETED, "pod deleted before it finished", None),
    Row(rules.job_deleted, facts(None, pod(RUNNING, phase="Running"), job_gone=True),
        FailureClass.POD_DELETED, "Job deleted before the pod finished", None),
    Row(rules.sigkill_under_memory_limit, facts(job(FAILED), pod(term(137)), memory_limited=True),
        FailureClass.OOM_KILLED, "killed by SIGKILL (exit code 137) with a memory limit set", 137),
    Row(rules.nonzero_exit, facts(job(FAILED), pod(term(3, message="Traceback\nValueError: boom"))),
        FailureClass.EXIT_CODE, "exit code 3 (Error): ValueError: boom", 3),
    Row(rules.succeeded, facts(None, pod(term(0, "Completed"), phase="Running")),
        FailureClass.SUCCEEDED, "exit code 0", 0),
    Row(rules.never_scheduled,
        facts(None, pod(phase="Pending", conditions=(UNSCHEDULED,)),
              events=[{"type": "Warning", "reason": "FailedScheduling", "message": "Insufficient cpu"}]),
        FailureClass.UNSCHEDULABLE, "never scheduled: 0/3 nodes available (FailedScheduling: Insufficient cpu)", None),
    Row(rules.no_pod_seen, facts(None, None),
        FailureClass.API_ERROR, "no pod was ever seen for the Job", None),
    Row(unexpected_state, facts(job(FAILED), pod(term(0, "Completed"), phase="Failed")),
        FailureClass.API_ERROR, "unexpected Kubernetes state: phase=Failed, job=(False, 'BackoffLimitExceeded'", 0),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.rule.__name__ for row in ROWS])
def test_each_rule_decides_its_own_state_first(row: Row) -> None:
    out = row.rule(row.facts)
    assert out is not None
    assert (out.failure_class, out.exit_code) == (row.failure_class, row.exit_code)
    assert row.message in out.message
    assert "unknown error" not in out.message.lower()
    assert first_match(row.facts) is row.rule
    assert decide(row.facts) == out


def test_every_rule_has_a_row() -> None:
    assert {row.rule for row in ROWS} == {*RULES, unexpected_state}


def test_the_order_of_the_rules() -> None:
    # The precedence is the specification; changing it is a decision, not a refactoring.
    assert [rule.__name__ for rule in RULES] == [
        "admission_refused",
        "deadline_exceeded",
        "evicted",
        "node_lost",
        "oom_killed",
        "start_error",
        "never_started",
        "completed_before_deletion",
        "pod_deleted",
        "job_deleted",
        "sigkill_under_memory_limit",
        "nonzero_exit",
        "succeeded",
        "never_scheduled",
        "no_pod_seen",
    ]


# (earlier rule, later rule, a state both match)
OVERLAPS = [
    # refused until the deadline: the refusal is why nothing ran
    (rules.admission_refused, rules.deadline_exceeded,
     facts(job(("Failed", "True", "DeadlineExceeded")), None, events=[FAILED_CREATE])),
    (rules.admission_refused, rules.no_pod_seen, facts(job(), None, events=[FAILED_CREATE])),
    (rules.start_error, rules.nonzero_exit, facts(job(FAILED), pod(term(128, "StartError", RUNC_ENOENT)))),
    (rules.start_error, rules.pod_deleted,
     facts(job(FAILED), pod(term(128, "StartError", RUNC_ENOENT), deleting=True))),
    (rules.deadline_exceeded, rules.pod_deleted,
     facts(job(("FailureTarget", "True", "DeadlineExceeded")), pod(term(143), deleting=True))),
    (rules.evicted, rules.pod_deleted,
     facts(job(FAILED), pod(term(143), deleting=True, conditions=(SCHEDULED, disruption("EvictionByEvictionAPI"))))),
    (rules.evicted, rules.node_lost,
     facts(job(FAILED), pod(term(137, "ContainerStatusUnknown"), reason="Evicted"))),
    (rules.node_lost, rules.pod_deleted,
     facts(job(FAILED), pod(term(143), deleting=True, conditions=(SCHEDULED, disruption("DeletionByPodGC"))))),
    (rules.oom_killed, rules.nonzero_exit, facts(job(FAILED), pod(term(137, "OOMKilled")))),
    (rules.oom_killed, rules.pod_deleted, facts(job(FAILED), pod(term(137, "OOMKilled")), pod_gone=True)),
    (rules.never_started, rules.pod_deleted,
     facts(job(FAILED), pod({"waiting": {"reason": "ErrImagePull"}}, phase="Pending", deleting=True))),
    (rules.pod_deleted, rules.nonzero_exit, facts(job(FAILED), pod(term(143), deleting=True))),
    # Exit 0 before the pod went (a namespace deleted after the phase ended): a success.
    (rules.completed_before_deletion, rules.pod_deleted,
     facts(None, pod(term(0, "Completed"), phase="Succeeded"), pod_gone=True)),
    (rules.completed_before_deletion, rules.succeeded,
     facts(None, pod(term(0, "Completed", finished="2025-01-01T11:59:00Z"), phase="Succeeded"), job_gone=True)),
    # Exit 0 in the second of the deletion or later (a phase that ends cleanly on SIGTERM): deleted.
    (rules.pod_deleted, rules.succeeded,
     facts(None, pod(term(0, "Completed", finished="2025-01-01T12:00:00Z"), phase="Succeeded", deleting=True))),
    (rules.job_deleted, rules.never_scheduled,
     facts(None, pod(phase="Pending", conditions=(UNSCHEDULED,)), job_gone=True)),
    (rules.sigkill_under_memory_limit, rules.nonzero_exit,
     facts(job(FAILED), pod(term(137)), memory_limited=True)),
]


@pytest.mark.parametrize(("earlier", "later", "state"), OVERLAPS,
                         ids=[f"{a.__name__}-over-{b.__name__}" for a, b, _ in OVERLAPS])
def test_the_earlier_rule_wins_where_two_match(earlier: Rule, later: Rule, state: AttemptFacts) -> None:
    assert RULES.index(earlier) < RULES.index(later)
    first, second = earlier(state), later(state)
    assert first is not None and second is not None
    assert first.failure_class is not second.failure_class or first.message != second.message
    assert decide(state) == first


def test_graceful_node_shutdown_is_node_lost_not_evicted() -> None:
    # The kubelet marks both with DisruptionTarget TerminationByKubelet; pod reason "Terminated" tells them apart.
    state = facts(job(FAILED), pod(term(143), reason="Terminated", message="imminent node shutdown",
                                   conditions=(SCHEDULED, disruption("TerminationByKubelet", "shutdown"))))
    assert rules.evicted(state) is None
    out = decide(state)
    assert out.failure_class is FailureClass.NODE_LOST and out.message == "node lost: shutdown"
    pressure = facts(job(FAILED), pod(term(137), conditions=(SCHEDULED, disruption("TerminationByKubelet"))))
    assert decide(pressure).failure_class is FailureClass.EVICTED


def test_facts_are_read_once_from_the_objects() -> None:
    restarted = pod({"running": {}}, phase="Running")
    restarted["status"]["containerStatuses"][0]["lastState"] = term(2, message="first try\nfailed")
    f = facts(job(FAILED), restarted)
    assert (f.exit_code, f.term_reason, f.term_message, f.no_code) == (2, "Error", "failed", None)
    assert (f.phase, f.deleting, f.finished) == ("Running", False, (False, "BackoffLimitExceeded",
                                                                     "BackoffLimitExceeded happened"))
    assert f.raw["pod"]["phase"] == "Running"
    empty = facts(None, None)
    assert (empty.exit_code, empty.no_code) == (None, "the container did not report an exit code")
    assert (empty.pod_reason, empty.disruption_reason, empty.disruption_message) == ("", "", "")


def test_classify_attempt_is_the_table_over_the_facts() -> None:
    kw: dict[str, Any] = {"job": job(FAILED), "pod": pod(term(137)), "memory_limited": True, "container": "phase"}
    out = classify_attempt(**kw)
    assert isinstance(out, KubeOutcome)
    assert out == decide(AttemptFacts.observe(**kw))


def test_a_refusal_is_the_latest_failed_create_in_one_line_with_the_events_kept() -> None:
    older = {**FAILED_CREATE, "lastTimestamp": "2025-01-01T11:59:00Z", "message": "Error creating: older refusal"}
    webhook = {**FAILED_CREATE, "lastTimestamp": "2025-01-01T12:00:05Z",
               "message": 'Error creating: admission webhook "policy.example" denied the request:\n  no   root'}
    ours = {"type": "Normal", "reason": "AttemptStarted", "message": "session s: attempt 1"}
    out = rules.refused_outcome(job(), [older, ours, webhook, FAILED_CREATE])
    assert out is not None and out.failure_class is FailureClass.ADMISSION_REFUSED
    assert out.message == 'pod refused at creation: admission webhook "policy.example" denied the request: no root'
    assert (out.exit_code, out.exit_code_reason) == (None, "the pod was never created: the API server refused it")
    assert out.raw_status is not None
    assert [e["reason"] for e in out.raw_status["events"]] == ["FailedCreate", "AttemptStarted", "FailedCreate",
                                                               "FailedCreate"]
    assert rules.refused_outcome(job(), [ours]) is None
    # a pod that was created after all (the quota freed up) is classified by its own state
    assert rules.admission_refused(facts(job(FAILED), pod(term(3)), events=[FAILED_CREATE])) is None


def test_a_start_error_has_no_exit_code_of_the_phase() -> None:
    out = decide(facts(job(FAILED), pod(term(128, "StartError", RUNC_ENOENT))))
    assert out.exit_code is None
    assert out.exit_code_reason == "the container never started (StartError; exit code 128 is the runtime's)"
    assert out.raw_status is not None and out.raw_status["pod"]["containerStatuses"][0]["state"]["terminated"][
        "reason"] == "StartError"
