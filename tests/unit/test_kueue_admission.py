"""Jobs in a Kueue queue, on the fake seam: suspended until admitted, preempted after.

The fake plays Kueue as a Job sees it (``FakeKube.admit``/``preempt``: ``spec.suspend``
flipped, ``startTime`` stamped, pods deleted, the stop finished and a ``Stopped`` Event). The e2e tier runs the
same against real Kueue (tests/e2e/test_kueue.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchdrain.classify.kube import not_admitted_outcome, preempted_outcome
from batchdrain.domain import AttemptResult, BadInput, FailureClass, PhaseSpec
from batchdrain.executors.base import AttemptLaunch, OrphanAttempt, StopSignal
from batchdrain.executors.kubernetes.admission import note_admission, taken_back
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.executors.kubernetes.watches import Tracker
from batchdrain.jobspec import KUEUE_PRIORITY_LABEL, KUEUE_QUEUE_LABEL, JobSpecBuilder
from batchdrain.kube import Forbidden
from batchdrain.preflight import check_kueue
from tests.unit.fake_kube import Exit, FakeKube, Gate, Out, Schedule, Start
from tests.unit.test_kube_executor import Harness, launch, logs, script, wait_for

PREEMPTION = ("Preempted to accommodate a workload (UID: 1, JobUID: 2) due to prioritization in the "
              "ClusterQueue; preemptor path: /cq; preemptee path: /cq")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*args: Any, **kwargs: Any) -> Harness:
        made.append(Harness(tmp_path, *args, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def queued(what: AttemptLaunch, queue: str = "team-a") -> AttemptLaunch:
    return dataclasses.replace(what, spec=dataclasses.replace(what.spec, queue=queue))


def test_a_queued_job_is_created_suspended_in_its_queue_and_waits_past_every_timeout(
    harness: Callable[..., Harness],
) -> None:
    # Scheduling 0.2 s + start 0.3 s: a pod-less Job is given up on after 0.5 s, unless a
    # queue holds it. Held for 1.5 s, then admitted: it runs, and the wait is recorded.
    h = harness(script(Schedule(), Start(), Out(b"ran\n"), Exit(0)), scheduling_timeout_seconds=0.2,
                start_timeout_seconds=0.3)
    worker, box = h.start(h.executor(), queued(launch()))
    assert wait_for(lambda: len(h.fake.jobs) == 1)
    (job,) = h.fake.jobs.values()
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    time.sleep(1.5)
    assert not box and not h.fake.pods  # still waiting, no verdict
    h.fake.admit(job["metadata"]["name"])
    worker.join(10)
    (result,) = box
    assert result.succeeded, result.message
    assert logs(result)["stdout"] == b"ran\n"
    assert result.created_at and result.admitted_at and result.started_at
    assert (result.admitted_at - result.created_at).total_seconds() >= 1.4
    assert result.admitted_at <= result.started_at + dt.timedelta(seconds=1)  # the kubelet's whole seconds
    assert [u.admitted_at for u in h.updates if u.admitted_at] == [result.admitted_at]  # said at once


def test_the_scheduling_timeout_counts_from_the_admission(harness: Callable[..., Harness]) -> None:
    # Admitted after 1 s, then never scheduled: unschedulable 0.2 s after the admission,
    # not at once (as it would be if counted from the Job's creation).
    h = harness(script(), scheduling_timeout_seconds=0.2, start_timeout_seconds=0.3)
    worker, box = h.start(h.executor(), queued(launch()))
    assert wait_for(lambda: len(h.fake.jobs) == 1)
    time.sleep(1.0)
    admitted = time.monotonic()
    h.fake.admit(next(iter(h.fake.jobs)))
    worker.join(10)
    (result,) = box
    assert result.failure_class is FailureClass.UNSCHEDULABLE, result.message
    assert time.monotonic() - admitted >= 0.2
    assert result.admitted_at is not None


def _preempted_while_running(harness: Callable[..., Harness], gate: threading.Event,
                             **preemption: float) -> tuple[Harness, str, AttemptResult]:
    """A queued attempt admitted, its pod printing one line, then preempted: its result."""
    h = harness(script(Schedule(), Start(), Out(b"working\n"), Gate(gate), Out(b"never\n"), Exit(0)))
    worker, box = h.start(h.executor(), queued(launch()))
    assert wait_for(lambda: len(h.fake.jobs) == 1)
    name = next(iter(h.fake.jobs))
    h.fake.admit(name)
    assert wait_for(lambda: any(u.pod_name for u in h.updates))
    time.sleep(0.3)  # the pump reads the first line
    h.fake.preempt(name, PREEMPTION, **preemption)
    worker.join(10)
    (result,) = box
    return h, name, result


# Kueue's stop takes its own time after the suspend (two more patches, then the Event):
# the Job must outlive it, or the Event saying why never comes (a CI run on real Kueue).
@pytest.mark.parametrize("stop_seconds", [0.2, 1.5])
def test_a_job_preempted_after_admission_is_preempted_not_charged_and_keeps_its_log(
    harness: Callable[..., Harness], stop_seconds: float,
) -> None:
    gate = threading.Event()
    h, name, result = _preempted_while_running(harness, gate, stop_seconds=stop_seconds)
    assert result.failure_class is FailureClass.PREEMPTED and not result.charged, result.message
    assert result.message.startswith(f"preempted by Kueue: {PREEMPTION}"), result.message
    assert logs(result)["stdout"] == b"working\n"
    assert h.fake.deleted_jobs == [name]
    gate.set()


def test_a_preempted_job_is_deleted_at_once_so_kueue_cannot_run_it_again_unrecorded(
    harness: Callable[..., Harness],
) -> None:
    # Real Kueue requeues the preempted workload and admitted the same Job again 3 s later,
    # while the first pod was still in its SIGTERM grace: a second pod ran the phase to
    # its end, unrecorded. Here: a 1 s grace, and Kueue admitting the Job again at 0.3 s.
    gate = threading.Event()
    h, name, result = _preempted_while_running(harness, gate, grace=1.0, readmit_after=0.3)
    assert result.failure_class is FailureClass.PREEMPTED and not result.charged, result.message
    assert len(h.fake.job_pods[name]) == 1, h.fake.job_pods  # admitted once: no second pod
    assert logs(result)["stdout"] == b"working\n"
    gate.set()


def test_a_job_never_admitted_within_the_admission_timeout_is_unschedulable(
    harness: Callable[..., Harness],
) -> None:
    h = harness(admission_timeout_seconds=0.5)
    result = h.run(h.executor(), queued(launch(), "missing-queue"))
    assert result.failure_class is FailureClass.UNSCHEDULABLE and result.charged
    assert result.message.startswith("not admitted by Kueue within 0.5s (LocalQueue missing-queue)"), result.message
    assert result.admitted_at is None and not h.fake.pods
    assert h.fake.deleted_jobs == [result.job_name]


def test_adopting_an_admitted_job_takes_its_admission_from_the_jobs_start_time(
    harness: Callable[..., Harness],
) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"one\n"), Gate(gate), Out(b"two\n"), Exit(0)))
    what = queued(launch())
    job = h.fake.create_job(JobSpecBuilder(h.settings, namespace=h.fake.namespace).build(what))
    h.fake.admit(job["metadata"]["name"])  # a controller that died after its Job was admitted
    worker, box = h.start(h.executor(), what)
    assert wait_for(lambda: h.fake.calls["get_job"] == 1)
    gate.set()
    worker.join(10)
    (result,) = box
    assert result.succeeded and result.admitted_at is not None
    assert logs(result)["stdout"] == b"one\ntwo\n"


def test_adopting_a_job_still_in_its_queue_waits_for_the_admission(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Exit(0)), scheduling_timeout_seconds=0.2, start_timeout_seconds=0.3)
    what = queued(launch())
    name = h.fake.create_job(JobSpecBuilder(h.settings, namespace=h.fake.namespace).build(what))["metadata"]["name"]
    orphan = OrphanAttempt(launch=what, session_id="dead", job_name=name, pod_uid=None, started_at_iso=None)
    box: list[Any] = []
    ex = h.executor()
    worker = threading.Thread(target=lambda: box.append(ex.adopt(orphan, stop=StopSignal(),
                                                                 on_update=h.updates.append)))
    worker.start()
    time.sleep(1.0)
    assert not box
    h.fake.admit(name)
    worker.join(10)
    assert box and box[0].succeeded and box[0].admitted_at is not None


def test_the_job_names_its_queue_priority_classes_only_when_given(harness: Callable[..., Harness]) -> None:
    h = harness(queue_name="team-a", workload_priority_class="batch-low", priority_class_name="low")
    builder = JobSpecBuilder(h.settings, namespace="ns")
    body = builder.build(launch())
    assert body["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert body["metadata"]["labels"][KUEUE_PRIORITY_LABEL] == "batch-low"
    assert body["spec"]["suspend"] is True
    assert body["spec"]["template"]["spec"]["priorityClassName"] == "low"
    # the phase's own choices win; the pod template carries none of Kueue's labels
    spec = dataclasses.replace(launch().spec, queue="team-b", workload_priority_class="batch-high",
                               priority_class="high")
    own = builder.build(dataclasses.replace(launch(), spec=spec))
    assert own["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-b"
    assert own["metadata"]["labels"][KUEUE_PRIORITY_LABEL] == "batch-high"
    assert own["spec"]["template"]["spec"]["priorityClassName"] == "high"
    assert KUEUE_QUEUE_LABEL not in own["spec"]["template"]["metadata"]["labels"]
    plain = JobSpecBuilder(harness().settings, namespace="ns").build(launch())
    assert "suspend" not in plain["spec"] and KUEUE_QUEUE_LABEL not in plain["metadata"]["labels"]
    assert "priorityClassName" not in plain["spec"]["template"]["spec"]


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("queue", "Team_A", "queue 'Team_A' is not a Kubernetes object name (a DNS-1123 label"),
    ("queue", "a" * 64, "is not a Kubernetes object name (a DNS-1123 label"),
    ("workload_priority_class", "high.prio", "workload_priority_class 'high.prio' is not a Kubernetes object name"),
    ("priority_class", "-x", "priority_class '-x' is not a Kubernetes object name (a DNS-1123 subdomain"),
])
def test_queue_and_priority_names_are_checked_at_enqueue(field: str, value: str, problem: str) -> None:
    with pytest.raises(BadInput) as err:
        PhaseSpec.from_json({"command": ["x"], field: value})
    assert problem in str(err.value)


def test_names_are_kept_as_written_through_the_stored_spec() -> None:
    data = {"command": ["x"], "queue": "team-a", "priority_class": "system.high", "workload_priority_class": "low"}
    spec = PhaseSpec.from_json(data)
    assert (spec.queue, spec.priority_class, spec.workload_priority_class) == ("team-a", "system.high", "low")
    assert PhaseSpec.from_json(spec.to_json()) == spec
    assert "queue" not in PhaseSpec.from_json({"command": ["x"]}).to_json()  # older rows unchanged


def test_pure_outcomes_of_a_queue() -> None:
    assert not_admitted_outcome(queue="q", waited=10.0, limit=0.0, job=None) is None  # no limit
    assert not_admitted_outcome(queue="q", waited=1.0, limit=5.0, job=None) is None
    late = not_admitted_outcome(queue="q", waited=5.0, limit=5.0, job=None)
    assert late is not None and late.failure_class is FailureClass.UNSCHEDULABLE
    event = {"reason": "Stopped", "message": "Preempted to accommodate a workload\n", "type": "Normal"}
    other = {"reason": "Started", "message": "Admitted by clusterQueue cq"}
    said = preempted_outcome({"spec": {"suspend": True}}, [other, event])
    assert said.failure_class is FailureClass.PREEMPTED and not said.charged
    assert said.message == "preempted by Kueue: Preempted to accommodate a workload (not charged; retried)"
    assert "suspended the Job again" in preempted_outcome(None, [other]).message


@pytest.mark.parametrize(("kueue", "queues", "queue", "ok", "said"), [
    (None, frozenset(), None, True, "not installed (no --queue-name: not needed)"),
    ("kueue.x-k8s.io/v1beta2", frozenset(), None, True, "installed (kueue.x-k8s.io/v1beta2); no --queue-name"),
    (None, frozenset(), "team-a", False, "--queue-name team-a: Kueue is not installed (no API group kueue.x-k8s.io)"),
    ("kueue.x-k8s.io/v1beta2", frozenset({"other"}), "team-a", False,
     "--queue-name team-a: no LocalQueue 'team-a' in namespace bd-test (kueue.x-k8s.io/v1beta2)"),
    ("kueue.x-k8s.io/v1beta2", frozenset({"team-a"}), "team-a", True,
     "kueue.x-k8s.io/v1beta2: LocalQueue team-a in namespace bd-test"),
])
def test_doctor_says_whether_kueue_is_installed_and_the_queue_exists(
    kueue: str | None, queues: frozenset[str], queue: str | None, ok: bool, said: str,
) -> None:
    fake = FakeKube(kueue=kueue, local_queues=queues)
    (check,) = check_kueue(fake, queue)
    assert check.ok is ok and check.detail.startswith(said), check


def test_a_session_without_a_queue_never_fails_its_preflight_on_kueue_discovery() -> None:
    fake = FakeKube()
    fake.inject("kueue_version", Forbidden("forbidden: /apis/kueue.x-k8s.io", status=403))
    (check,) = check_kueue(fake, None)
    assert check.ok and check.detail.startswith("not checked (Forbidden: forbidden"), check
    fake.inject("kueue_version", Forbidden("forbidden: /apis/kueue.x-k8s.io", status=403))
    (check,) = check_kueue(fake, "team-a")
    assert not check.ok and "forbidden" in check.detail


def _job(version: int, *, suspend: bool) -> dict[str, Any]:
    return {"metadata": {"name": "j", "resourceVersion": str(version)}, "spec": {"suspend": suspend}, "status": {}}


def test_a_preemption_is_told_from_a_stale_job_when_two_updates_fall_between_looks() -> None:
    # The Job watch may deliver "resumed" and "suspended again" between two looks, so the
    # resumed version is never seen; the pod (made only once resumed) dates the admission.
    tracker = Tracker("j")
    attempt = LiveAttempt(launch=queued(launch()), job_name="j", tracker=tracker,
                          created_at=dt.datetime.now(dt.UTC), deadline=float("inf"), queue="team-a")
    updates: list[Any] = []
    tracker.on_job("ADDED", _job(10, suspend=True))
    note_admission(attempt, None, updates.append)
    assert attempt.awaiting_admission and not attempt.preempted
    pod = {"metadata": {"name": "j-1", "resourceVersion": "14"}}
    note_admission(attempt, pod, updates.append)  # the pod came before the Job's resume: admitted, not preempted
    assert attempt.admitted_at is not None and not attempt.preempted and len(updates) == 1
    assert attempt.deadline < float("inf")
    tracker.on_job("MODIFIED", _job(17, suspend=True))  # resumed at 12, suspended again at 17
    assert taken_back(attempt, tracker.job)
    note_admission(attempt, pod, updates.append)
    assert attempt.preempted and len(updates) == 1
