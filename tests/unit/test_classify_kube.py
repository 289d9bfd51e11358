"""Pure classification of Job/Pod/Event dicts into failure classes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from batchdrain.classify.kube import (
    classify_attempt,
    condition,
    container_seconds,
    container_times,
    image_of,
    pending_outcome,
    waiting_outcome,
)
from batchdrain.domain import FailureClass

NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def job(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "j"},
        "status": {
            "conditions": [{"type": t, "status": s, "reason": r, "message": f"{r} happened"} for t, s, r in conditions]
        },
    }


def pod(
    state: dict[str, Any] | None = None,
    *,
    phase: str = "Failed",
    reason: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    message: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        or [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T11:59:00Z"}],
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [
            {"name": "phase", "image": "img:1", "imageID": "docker.io/img@sha256:feed", "state": state}
        ]
    meta: dict[str, Any] = {"name": "p", "uid": "u"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:00:00Z"
    return {"metadata": meta, "status": status}


def term(code: int, reason: str = "Error", message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": "2025-01-01T11:59:30Z",
            "finishedAt": "2025-01-01T12:00:00Z",
        }
    }
    if message:
        out["terminated"]["message"] = message
    return out


FAILED = ("Failed", "True", "BackoffLimitExceeded")
COMPLETE = ("Complete", "True", "CompletionsReached")


def classify(j: dict[str, Any] | None, p: dict[str, Any] | None, **kw: Any) -> Any:
    return classify_attempt(job=j, pod=p, container="phase", **kw)


def test_succeeded() -> None:
    out = classify(job(COMPLETE), pod(term(0, "Completed"), phase="Succeeded"))
    assert (out.failure_class, out.exit_code, out.raw_status) == (FailureClass.SUCCEEDED, 0, None)


def test_exit_code_with_termination_message() -> None:
    out = classify(job(FAILED), pod(term(3, message="Traceback\nValueError: boom")))
    assert out.failure_class is FailureClass.EXIT_CODE
    assert out.exit_code == 3
    assert "exit code 3" in out.message and "ValueError: boom" in out.message


@pytest.mark.parametrize("code", [137, 0])
def test_oom_killed_reason_wins_even_with_exit_0(code: int) -> None:
    out = classify(job(FAILED), pod(term(code, "OOMKilled")))
    assert out.failure_class is FailureClass.OOM_KILLED
    assert out.exit_code == code


def test_exit_137_without_reason_is_oom_only_with_memory_limit() -> None:
    assert classify(job(FAILED), pod(term(137)), memory_limited=True).failure_class is FailureClass.OOM_KILLED
    assert classify(job(FAILED), pod(term(137)), memory_limited=False).failure_class is FailureClass.EXIT_CODE


@pytest.mark.parametrize("kind", ["Failed", "FailureTarget"])
def test_deadline_exceeded_beats_the_deletion_it_caused(kind: str) -> None:
    out = classify(job((kind, "True", "DeadlineExceeded")), pod(term(143), deleting=True))
    assert out.failure_class is FailureClass.DEADLINE_EXCEEDED
    assert out.raw_status is not None and out.raw_status["job"]["conditions"]


def test_condition_status_false_is_not_true() -> None:
    # "False" is a truthy string: a condition is only met when its status == "True".
    out = classify(job(("Failed", "False", "DeadlineExceeded"), FAILED), pod(term(2)))
    assert out.failure_class is FailureClass.EXIT_CODE
    assert condition(job(("Complete", "False", "x")), "Complete") is None


def test_evicted_by_kubelet_and_by_api() -> None:
    kubelet = classify(job(FAILED), pod(term(137), reason="Evicted", message="The node was low on resource: memory."))
    assert kubelet.failure_class is FailureClass.EVICTED
    assert "low on resource" in kubelet.message
    api = classify(
        job(FAILED),
        pod(
            term(143),
            deleting=True,
            conditions=[
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API",
                }
            ],
        ),
    )
    assert api.failure_class is FailureClass.EVICTED


def test_node_lost() -> None:
    unknown = classify(job(FAILED), pod(term(137, "ContainerStatusUnknown")))
    assert unknown.failure_class is FailureClass.NODE_LOST
    assert unknown.exit_code is None and unknown.exit_code_reason
    gc = classify(
        job(FAILED),
        pod(
            term(143),
            deleting=True,
            conditions=[
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": "node gone"}
            ],
        ),
    )
    assert gc.failure_class is FailureClass.NODE_LOST


def test_pod_deleted_by_someone() -> None:
    out = classify(job(FAILED), pod(term(143), deleting=True))
    assert out.failure_class is FailureClass.POD_DELETED
    assert (
        classify(None, pod({"running": {}}, phase="Running"), pod_gone=True).failure_class is FailureClass.POD_DELETED
    )


@pytest.mark.parametrize(
    ("reason", "klass"),
    [
        ("ErrImagePull", FailureClass.IMAGE_PULL),
        ("ImagePullBackOff", FailureClass.IMAGE_PULL),
        ("InvalidImageName", FailureClass.IMAGE_PULL),
        ("ErrImageNeverPull", FailureClass.IMAGE_PULL),
        ("CreateContainerConfigError", FailureClass.CONFIG_ERROR),
    ],
)
def test_waiting_states_fail_fast(reason: str, klass: FailureClass) -> None:
    p = pod({"waiting": {"reason": reason, "message": 'secret "db" not found'}}, phase="Pending")
    out = waiting_outcome(p, container="phase")
    assert out is not None and out.failure_class is klass
    assert out.exit_code is None and out.exit_code_reason
    assert classify(job(FAILED), p).failure_class is klass


def test_container_creating_is_not_a_failure_yet() -> None:
    assert (
        waiting_outcome(pod({"waiting": {"reason": "ContainerCreating"}}, phase="Pending"), container="phase") is None
    )


def unscheduled() -> dict[str, Any]:
    return pod(
        None,
        phase="Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes available"}
        ],
    )


def test_unschedulable_only_past_the_scheduling_timeout() -> None:
    created = NOW - dt.timedelta(seconds=30)
    args = {"container": "phase", "created_at": created, "start_timeout": 300.0}
    assert pending_outcome(unscheduled(), now=NOW, scheduling_timeout=60.0, **args) is None
    out = pending_outcome(
        unscheduled(),
        now=NOW,
        scheduling_timeout=10.0,
        events=[{"type": "Warning", "reason": "FailedScheduling", "message": "Insufficient cpu"}],
        **args,
    )
    assert out is not None and out.failure_class is FailureClass.UNSCHEDULABLE
    assert "0/3 nodes available" in out.message and "FailedScheduling" in out.message


def test_scheduling_timeout_counts_from_when_the_pod_was_first_seen() -> None:
    # The Job waited 100s for the Job controller to make its pod; the pod itself 30s.
    args = {"container": "phase", "created_at": NOW - dt.timedelta(seconds=130), "start_timeout": 300.0}
    assert pending_outcome(unscheduled(), now=NOW, scheduling_timeout=60.0,
                           pod_seen_at=NOW - dt.timedelta(seconds=30), **args) is None
    late = pending_outcome(unscheduled(), now=NOW, scheduling_timeout=60.0,
                           pod_seen_at=NOW - dt.timedelta(seconds=61), **args)
    assert late is not None and late.failure_class is FailureClass.UNSCHEDULABLE and late.charged


def test_a_job_without_a_pod_is_the_control_plane_behind_not_unschedulable() -> None:
    args = {"container": "phase", "scheduling_timeout": 120.0, "start_timeout": 300.0}
    # past the scheduling timeout, but a Job controller with a deep queue is waited for
    assert pending_outcome(None, now=NOW, created_at=NOW - dt.timedelta(seconds=400), **args) is None
    out = pending_outcome(None, now=NOW, created_at=NOW - dt.timedelta(seconds=420), **args)
    assert out is not None and out.failure_class is FailureClass.API_ERROR
    assert not out.charged, "the platform's failure is not counted against the phase"
    assert out.message.startswith("no pod made for the Job within 420s") and "Job controller" in out.message
    assert out.exit_code is None and out.exit_code_reason == "the Job controller made no pod"


def test_start_timeout_is_separate_and_uses_mount_events() -> None:
    p = pod({"waiting": {"reason": "ContainerCreating"}}, phase="Pending")  # scheduled 11:59:00
    args = {"container": "phase", "created_at": NOW - dt.timedelta(minutes=5), "scheduling_timeout": 1.0}
    assert pending_outcome(p, now=NOW, start_timeout=120.0, **args) is None
    slow = pending_outcome(p, now=NOW, start_timeout=30.0, **args)
    assert slow is not None and slow.failure_class is FailureClass.API_ERROR
    mount = pending_outcome(
        p,
        now=NOW,
        start_timeout=30.0,
        events=[{"type": "Warning", "reason": "FailedMount", "message": 'secret "x" not found'}],
        **args,
    )
    assert mount is not None and mount.failure_class is FailureClass.CONFIG_ERROR


def test_unexpected_state_is_api_error_with_raw_status_never_unknown() -> None:
    weird = classify(job(FAILED), pod(term(0, "Completed"), phase="Failed"))
    assert weird.failure_class is FailureClass.API_ERROR
    assert weird.raw_status is not None and weird.raw_status["pod"]["phase"] == "Failed"
    assert "unknown error" not in weird.message.lower()
    nothing = classify(None, None)
    assert nothing.failure_class is FailureClass.API_ERROR and nothing.message


def test_a_start_error_is_a_launch_error_and_its_epoch_start_no_start() -> None:
    # As the e2e cluster reports a missing binary: exit code 128 of the runtime's making.
    state = term(128, "StartError", 'failed to create containerd task: ... exec: "/no/such/binary": stat '
                 "/no/such/binary: no such file or directory: unknown")
    state["terminated"]["startedAt"] = "1970-01-01T00:00:00Z"
    out = classify(job(FAILED), pod(state))
    assert (out.failure_class, out.exit_code) == (FailureClass.LAUNCH_ERROR, None)
    assert out.message.startswith('the container never started: failed to create containerd task: ... exec: "/no')
    assert "StartError" in str(out.exit_code_reason) and out.raw_status
    started, finished = container_times(pod(state), "phase")
    assert started is None and finished == dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert container_times(pod(term(1)), "phase")[0] == dt.datetime(2025, 1, 1, 11, 59, 30, tzinfo=dt.UTC)


def test_image_digest_from_image_id() -> None:
    assert image_of(pod(term(0)), "phase") == ("img:1", "sha256:feed")
    assert image_of(None, "phase") == (None, None)


def test_exit_zero_completed_is_success_before_pod_phase_and_job_condition_catch_up():
    from batchdrain.classify.kube import classify_attempt
    from batchdrain.domain import FailureClass

    pod = {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "phase", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}
    job = {"metadata": {"name": "j"}, "status": {"active": 1}}
    outcome = classify_attempt(job=job, pod=pod, container="phase")
    assert outcome.failure_class is FailureClass.SUCCEEDED and outcome.exit_code == 0


# -- durations -------------------------------------------------------------------------


def _t(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


@pytest.mark.parametrize(("started", "finished", "seen", "expected"), [
    # never started (StartError reports startedAt 1970-01-01, dropped by container_times): none
    (None, "2026-01-01T00:00:05+00:00", 0.4, None),
    # within one kubelet second (which says 0): our sub-second sighting
    ("2026-01-01T00:00:05+00:00", "2026-01-01T00:00:05+00:00", 0.31, 0.31),
    # ... held below a second, where the kubelet's seconds put it
    ("2026-01-01T00:00:05+00:00", "2026-01-01T00:00:05+00:00", 1.7, 0.999),
    # from a second up: the kubelet's difference (error under a second), not the sighting
    ("2026-01-01T00:00:05+00:00", "2026-01-01T00:00:06+00:00", 0.4, 1.0),
    ("2026-01-01T00:00:05+00:00", "2026-01-01T00:00:09+00:00", 30.0, 4.0),
    # the kubelet's seconds running backwards: never negative
    ("2026-01-01T00:00:06+00:00", "2026-01-01T00:00:05+00:00", None, 0.0),
    ("2026-01-01T00:00:06+00:00", "2026-01-01T00:00:05+00:00", 0.2, 0.2),
    # no sighting: the kubelet's difference
    ("2026-01-01T00:00:05+00:00", "2026-01-01T00:00:05+00:00", None, 0.0),
])
def test_container_seconds_from_the_best_clock(started, finished, seen, expected) -> None:
    base = _t("2026-01-01T00:00:05.100+00:00")
    got = container_seconds(started=_t(started) if started else None, finished=_t(finished) if finished else None,
                            seen_started=base if seen is not None else None,
                            seen_finished=base + dt.timedelta(seconds=seen) if seen is not None else None)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(("finished", "within", "expected"), [
    # the kubelet's seconds rounded a ~1.1 s run up to 2 inside an attempt of 1.87 s
    ("2026-01-01T00:00:07+00:00", 1.87, 1.87),
    # an attempt longer than the container: the kubelet's difference stands
    ("2026-01-01T00:00:07+00:00", 9.5, 2.0),
    ("2026-01-01T00:00:07+00:00", None, 2.0),
])
def test_a_container_never_runs_longer_than_its_attempt(finished, within, expected) -> None:
    base = _t("2026-01-01T00:00:05.100+00:00")
    got = container_seconds(started=_t("2026-01-01T00:00:05+00:00"), finished=_t(finished),
                            seen_started=base, seen_finished=base + dt.timedelta(seconds=1.1), within=within)
    assert got == pytest.approx(expected)


def test_the_zero_time_of_a_container_that_never_started_is_no_time() -> None:
    pod = {"status": {"containerStatuses": [{"name": "phase", "state": {"terminated": {
        "exitCode": 128, "reason": "StartError", "startedAt": "1970-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:05Z"}}}]}}
    started, finished = container_times(pod, "phase")
    assert started is None and finished == _t("2026-01-01T00:00:05+00:00")
