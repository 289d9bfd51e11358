"""From what the watches saw to an ``AttemptResult``: classification glue and endings.

The rules themselves are pure (``batchdrain.classify``); this module feeds them the
attempt's Job, pod and, where they explain a failure, its Events, and builds the result
with durations, log pointers, the first error line and the notes gathered on the way.
It also words the endings that have no pod to classify: a Job never created, a Job
gone before adoption, the API lost, the controller stopping.
"""

from __future__ import annotations

import datetime as dt
import traceback

from batchdrain.classify import with_error_line
from batchdrain.classify.kube import (
    KubeOutcome,
    classify_attempt,
    condition,
    container_seconds,
    container_times,
    image_of,
    pending_outcome,
    preempted_outcome,
    raw_status,
    refused_outcome,
    terminated_state,
)
from batchdrain.domain import AttemptResult, FailureClass, utcnow
from batchdrain.executors.base import AttemptLaunch
from batchdrain.executors.kubernetes.live import DEADLINE_MARGIN_SECONDS, LiveAttempt
from batchdrain.executors.kubernetes.logbook import LogBook
from batchdrain.jobspec import CONTAINER
from batchdrain.kube import KubeApi, KubeError, KubeObject
from batchdrain.settings import Settings


def clean_exit(pod: KubeObject | None) -> bool:
    """The phase container exited 0 on its own: no deletion, no disruption."""
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp") or condition(pod, "DisruptionTarget"):
        return False
    terminated = terminated_state(pod, CONTAINER) or {}
    return terminated.get("exitCode") == 0 and terminated.get("reason") == "Completed"


def crash_result(err: Exception) -> AttemptResult:
    return AttemptResult(
        FailureClass.API_ERROR,
        f"executor error: {type(err).__name__}: {err}",
        None,
        "the executor failed while handling the attempt",
        raw_status={"exception": traceback.format_exception(err)[-5:]},
        charged=False,  # our bug, not the phase's
    )


def namespace_gone(err: KubeError, namespace: str) -> str | None:
    """Why ``err`` says the session's namespace is being deleted or gone, else None.

    Creating anything in a terminating namespace is refused (403, "... because it is
    being terminated"); once it is gone, the namespace itself is NotFound.
    """
    details = err.details or {}
    if err.status == 404 and details.get("kind") == "namespaces" and details.get("name") == namespace:
        return f"namespace {namespace} is gone"
    if err.status == 403 and "because it is being terminated" in err.message:
        return f"namespace {namespace} is being deleted"
    return None


INTERRUPTED = KubeOutcome(
    FailureClass.CONTROLLER_INTERRUPTED,
    "controller stopped (SIGTERM) before the phase finished; grace period ended; "
    "Job left running for the next session to adopt",
    None,
    "the controller stopped before the container ended",
    None,
)

DEADLINE_GIVEN_UP = KubeOutcome(
    FailureClass.DEADLINE_EXCEEDED,
    f"no end after activeDeadlineSeconds + {DEADLINE_MARGIN_SECONDS:g}s; the controller gave up waiting",
    None,
    "the controller stopped waiting for the container",
    None,
)


def lost_outcome(error: KubeError) -> KubeOutcome:
    return KubeOutcome(
        FailureClass.API_ERROR,
        f"lost the Kubernetes API (watch failed past the retry budget): {error.message}; "
        "Job left in place for the next session to adopt",
        None,
        "the controller lost sight of the pod",
        {"watch_error": error.as_status()},
    )


class Outcomes:
    """Classifies attempts and builds their results for one executor."""

    def __init__(self, api: KubeApi, settings: Settings, logs: LogBook) -> None:
        self._api = api
        self._settings = settings
        self._logs = logs

    def _memory_limited(self, attempt: LiveAttempt) -> bool:
        return bool(attempt.launch.spec.memory or self._settings.memory_limit)

    def classify(self, attempt: LiveAttempt, pod: KubeObject | None) -> KubeOutcome:
        tracker = attempt.tracker
        outcome = classify_attempt(
            job=tracker.job, pod=pod, container=CONTAINER, memory_limited=self._memory_limited(attempt),
            pod_gone=tracker.pod_gone(pod), job_gone=tracker.job_gone,
        )
        # Without a pod, the Job's Events say why (FailedCreate: its pod was refused).
        subject = pod if pod is not None else tracker.job
        if outcome.failure_class in (FailureClass.SUCCEEDED, FailureClass.EXIT_CODE) or subject is None:
            return outcome
        events = self._events(subject)
        if isinstance(events, KubeError):
            return _with_events_error(outcome, events)
        return classify_attempt(
            job=tracker.job, pod=pod, events=events, container=CONTAINER,
            memory_limited=self._memory_limited(attempt), pod_gone=tracker.pod_gone(pod), job_gone=tracker.job_gone,
        )

    def refusal(self, attempt: LiveAttempt) -> KubeOutcome | None:
        """The Job's pod refused at creation (quota, LimitRange...), from the Job's Events; or None.

        A failed list is noted on the attempt (once per kind of error) and read as "not
        refused": the caller asks again at its next interval.
        """
        job = attempt.tracker.job
        if job is None:
            return None
        events = self._events(job)
        if isinstance(events, KubeError):
            note = f"Job events not listed: {type(events).__name__}: {events.message}"
            if note not in attempt.notes:
                attempt.notes.append(note)
            return None
        return refused_outcome(job, events)

    def preempted(self, attempt: LiveAttempt) -> KubeOutcome:
        """Kueue suspended the Job again after admitting it: what its ``Stopped`` Event says."""
        job = attempt.tracker.job
        events = self._events(job) if job is not None else []
        if isinstance(events, KubeError):
            return _with_events_error(preempted_outcome(job, []), events)
        return preempted_outcome(job, events)

    def explain_pending(self, outcome: KubeOutcome, pod: KubeObject | None, *,
                        job: KubeObject | None = None) -> KubeOutcome:
        """Re-derive an early verdict with the pod's Events: they say why (FailedScheduling...).

        Without a pod, the Job's Events: a pod refused at creation is why none was scheduled.
        """
        if pod is None:
            return self._explain_podless(outcome, job)
        events = self._events(pod)
        if isinstance(events, KubeError):
            return _with_events_error(outcome, events)
        return pending_outcome(
            pod, container=CONTAINER,
            now=utcnow() + dt.timedelta(days=3650),  # already decided: only enrich it
            created_at=utcnow(), scheduling_timeout=self._settings.scheduling_timeout_seconds,
            start_timeout=self._settings.start_timeout_seconds, events=events,
        ) or outcome

    def _explain_podless(self, outcome: KubeOutcome, job: KubeObject | None) -> KubeOutcome:
        if job is None or outcome.failure_class is FailureClass.ADMISSION_REFUSED:
            return outcome  # already read from the Job's Events
        events = self._events(job)
        if isinstance(events, KubeError):
            return _with_events_error(outcome, events)
        refused = refused_outcome(job, events)
        if refused is not None:
            return refused
        raw = {**(outcome.raw_status or {}), **raw_status(job, None, events)}
        return KubeOutcome(outcome.failure_class, outcome.message, outcome.exit_code, outcome.exit_code_reason, raw,
                           charged=outcome.charged)

    def _events(self, obj: KubeObject) -> list[KubeObject] | KubeError:
        """Events about a pod or a Job (by name and uid: a same-named predecessor's are not ours)."""
        meta = obj.get("metadata") or {}
        try:
            return self._api.list_events(name=str(meta.get("name")), uid=meta.get("uid"))
        except KubeError as err:
            return err

    def result(self, attempt: LiveAttempt, outcome: KubeOutcome, pod: KubeObject | None) -> AttemptResult:
        now = utcnow()
        started, finished = container_times(pod, CONTAINER)
        image, digest = image_of(pod, CONTAINER)
        pointers = [out.close() for out in attempt.outs.values()]
        error_line = self._logs.error_line(attempt)
        message = outcome.message
        if outcome.failure_class is not FailureClass.SUCCEEDED:
            message = with_error_line(message, error_line)
        raw = outcome.raw_status
        notes = list(attempt.notes)
        notes += [f"log {p.out.stream}: {p.error.message}" for p in attempt.pumps if p.error]
        notes += [f"log {p.out.stream}: {p.problem}" for p in attempt.pumps if p.problem]
        notes += [f"log {p.out.stream}: the kubelet answered instead of the log: {e}" for p in attempt.pumps
                  for e in p.kubelet_errors]
        if notes:
            raw = {**(raw or {}), "notes": notes}
        meta = (pod or {}).get("metadata") or {}
        end = finished or now
        total = max((now - attempt.created_at).total_seconds(), 0.0)
        seconds = container_seconds(started=started, finished=finished, seen_started=attempt.seen_started,
                                    seen_finished=attempt.seen_finished, within=total)
        return AttemptResult(
            failure_class=outcome.failure_class, message=message, exit_code=outcome.exit_code,
            exit_code_reason=outcome.exit_code_reason, started_at=started, finished_at=end,
            created_at=attempt.created_at, admitted_at=attempt.admitted_at,
            container_seconds=seconds,
            total_seconds=total,
            first_error_line=error_line, logs=pointers, log_mode=self._logs.mode, job_name=attempt.job_name,
            pod_names=sorted(attempt.tracker.pods), pod_uid=meta.get("uid"),
            node=(pod or {}).get("spec", {}).get("nodeName"), image=image or attempt.launch.image,
            image_digest=digest, raw_status=raw, charged=outcome.charged,
        )

    def never_ran(self, launch: AttemptLaunch, job_name: str, *, failure_class: FailureClass, message: str,
                  exit_code_reason: str, note: str, pod_uid: str | None = None, charged: bool = True) -> AttemptResult:
        """An attempt without a pod to classify: its logs say why nothing follows."""
        return AttemptResult(
            failure_class, message, None, exit_code_reason, job_name=job_name, pod_uid=pod_uid,
            log_mode=self._logs.mode, logs=self._logs.note_only(launch, job_name, note), charged=charged,
        )

    def launch_failure(self, launch: AttemptLaunch, name: str, err: KubeError, *,
                       adopting: bool = False) -> tuple[AttemptResult, str | None]:
        """The API refused or never answered the create (or the read, when adopting).

        Transient trouble that outlived the retry policy is api_error (retry later) and
        leaves the attempt open: a create whose answer never came may still have made
        the Job, so the next session looks for it by its deterministic name. A request
        the server refuses (RBAC, validation) will fail the same way again. Also returns
        why the API counts as lost from now on (None when the server answered).
        """
        verb = "reading" if adopting else "creating"
        message = f"{verb} the Job failed: {type(err).__name__} ({err.status}): {err.message}"
        gone = namespace_gone(err, self._api.namespace)
        if gone is not None:
            # Nothing the phase did, and nothing to adopt: not charged, and the session halts.
            return self.never_ran(launch, name, failure_class=FailureClass.API_ERROR, message=f"{gone}: {message}",
                                  exit_code_reason="the Job was never created", note=message,
                                  charged=False), f"{gone} (deleted mid-drain)"
        unsure = err.retriable or err.status == 410
        klass = FailureClass.API_ERROR if unsure else FailureClass.LAUNCH_ERROR
        lost = f"lost the Kubernetes API: {message}" if unsure else None
        if unsure:
            message += "; left for the next session to check for the Job"
        if adopting:
            why = "the Job could not be read"
        else:
            why = "the Job may not exist" if unsure else "the Job was never created"
        result = AttemptResult(
            klass, message, None, why, job_name=name, log_mode=self._logs.mode,
            raw_status={"api_error": err.as_status()}, logs=self._logs.note_only(launch, name, message),
        )
        result.left_running = unsure
        return result, lost


def _with_events_error(outcome: KubeOutcome, err: KubeError) -> KubeOutcome:
    raw = {**(outcome.raw_status or {}), "events_error": err.as_status()}
    return KubeOutcome(outcome.failure_class, outcome.message, outcome.exit_code, outcome.exit_code_reason, raw,
                       charged=outcome.charged)


__all__ = ["DEADLINE_GIVEN_UP", "INTERRUPTED", "Outcomes", "clean_exit", "crash_result", "lost_outcome"]
