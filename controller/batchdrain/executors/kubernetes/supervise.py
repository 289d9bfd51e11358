"""Driving one attempt from its Job's creation (or adoption) to its result.

The loop looks at what the watches delivered (never at the API server), turns each look
into an ``Observation`` and lets the state machine (``attempt.py``) decide; entering a
state is where the work happens: RUNNING starts the log pumps, ENDED and GAVE_UP
classify and clean up, INTERRUPTED and LOST leave the Job for the next session.
Between looks the loop sleeps on the attempt's tracker, woken by watch events,
failures, aborts and stop requests; the clock wakes it only for what the clock alone
decides (``_next_look``), so a thousand running attempts do not poll. Every wait has a
deadline: the scheduling and start timeouts, the Job's ``activeDeadlineSeconds`` plus a
margin, the SIGTERM grace, bounded log joins. A log store that fails (a pump's write, a
log's close) raises ``LogStoreError`` out of here: the executor leaves the attempt's Job
for the next session, which resumes its logs from what the store holds.
"""

from __future__ import annotations

import time

from batchdrain.classify.kube import (
    KubeOutcome,
    condition,
    container_started,
    job_outcome,
    job_synced,
    kueue_stopping,
    pending_outcome,
    pod_terminal,
    podless_limit,
    suspended,
)
from batchdrain.domain import AttemptProgress, AttemptResult, utcnow
from batchdrain.executors.base import AttemptUpdate, StopSignal
from batchdrain.executors.kubernetes import attempt as machine
from batchdrain.executors.kubernetes.admission import (
    admission_sleep,
    admission_verdict,
    note_admission,
    taken_back,
)
from batchdrain.executors.kubernetes.attempt import AttemptState, Observation
from batchdrain.executors.kubernetes.cleanup import OwedRemovals, remove_attempt_objects
from batchdrain.executors.kubernetes.events import tell
from batchdrain.executors.kubernetes.live import LiveAttempt
from batchdrain.executors.kubernetes.logbook import LOG_JOIN_SECONDS, LogBook
from batchdrain.executors.kubernetes.outcome import (
    DEADLINE_GIVEN_UP,
    INTERRUPTED,
    Outcomes,
    clean_exit,
    lost_outcome,
    namespace_gone,
)
from batchdrain.executors.kubernetes.watches import Inventory, container_state
from batchdrain.jobspec import CONTAINER
from batchdrain.kube import KubeApi, KubeError, KubeObject, NotFound
from batchdrain.settings import Settings

# How long a preempted Job is left to Kueue to finish stopping it (its ``stopping``
# annotation gone) before it is deleted: three API calls of Kueue's, normally milliseconds.
KUEUE_STOP_WAIT_SECONDS = 10.0


class Supervisor:
    """Runs attempts of one executor to their end; stateless between attempts."""

    def __init__(self, api: KubeApi, settings: Settings, *, logs: LogBook, outcomes: Outcomes,
                 inventory: Inventory, tick_seconds: float, idle_seconds: float,
                 job_condition_grace_seconds: float) -> None:
        self._api = api
        self._settings = settings
        self._logs = logs
        self._outcomes = outcomes
        self._tick = tick_seconds
        self._idle = idle_seconds
        self._grace = job_condition_grace_seconds
        self._inventory = inventory
        # Set when the session's namespace is being deleted or gone: the session halts.
        self.namespace_lost: str | None = None
        # Removals that failed past the retry budget: the session's end tries them again.
        self.owed = OwedRemovals()

    def supervise(self, attempt: LiveAttempt, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        tracker = attempt.tracker
        seen = -1
        early: KubeOutcome | None = None
        while attempt.state not in machine.TERMINAL:
            seen = tracker.wait(seen, 0.0)
            failed = attempt.store_error()
            if failed is not None:
                raise failed  # the executor leaves the attempt for the next session
            pod = tracker.current_pod()
            note_admission(attempt, pod, on_update)
            if attempt.preempted and not attempt.preemption_stopped:
                self._stop_preempted(attempt)
            if pod is not None:
                self._report_pod(attempt, pod, on_update)
                self._note_sightings(attempt, pod)
            early = self._early_verdict(attempt, pod) or self._refused(attempt, pod)
            look = Observation(
                container_started=pod is not None and container_started(pod, CONTAINER),
                watch_lost=tracker.watch_error is not None,
                finished=self._finished(attempt, pod),
                pending_verdict=early is not None,
                stop_expired=stop.stopping and stop.expired(),
                deadline_passed=time.monotonic() >= attempt.deadline,
            )
            for event in machine.events_of(look):
                self._enter(attempt, machine.transition(attempt.state, event), pod)
            if attempt.state not in machine.TERMINAL:
                seen = tracker.wait(seen, max(self._next_look(attempt, stop, pod), 0.0))
        return self._conclude(attempt, stop, early)

    def _next_look(self, attempt: LiveAttempt, stop: StopSignal, pod: KubeObject | None) -> float:
        """How long the attempt may sleep, if nothing wakes it, before it must look again.

        Watch events, a watch failure, an abort and a stop request (``on_request``, set
        up by the executor) all wake the tracker; only what the clock alone brings is
        bounded here. A running container with nothing happening sleeps until its
        deadline (at most ``idle``): at parallelism 1,000 a look every tick per attempt
        was half the controller's CPU. While the clock decides (no pod yet: Events are
        listed on a schedule; a verdict before the start; the Job's grace after its
        end; a stop's grace) the attempt looks every tick.
        """
        limit = self._wait_limit(attempt, stop)
        if attempt.awaiting_admission and not stop.stopping:
            return min(admission_sleep(attempt, self._settings.admission_timeout_seconds, self._idle), limit)
        if pod is None and not stop.stopping and attempt.job_done_at is None and not job_synced(attempt.tracker.job):
            # Only the Job's first sync (which wakes the attempt) or the pod-less limit can
            # change anything: no look every tick while the Job controller is behind.
            age = (utcnow() - attempt.clock_start).total_seconds()
            return min(self._idle, limit, max(self._give_up_from(attempt, None) - age, 0.0))
        if pod is None or stop.stopping or attempt.job_done_at is not None:
            return min(self._tick, limit)
        if not container_started(pod, CONTAINER):
            if self._may_give_up(attempt, pod):
                return min(self._tick, limit)
            limit = min(limit, self._give_up_from(attempt, pod) - (utcnow() - attempt.clock_start).total_seconds())
        return min(self._idle, limit)

    def _enter(self, attempt: LiveAttempt, state: AttemptState, pod: KubeObject | None) -> None:
        if state is AttemptState.RUNNING and attempt.state is AttemptState.WAITING and pod is not None:
            self._logs.start(attempt, pod)
        attempt.state = state

    def _conclude(self, attempt: LiveAttempt, stop: StopSignal, early: KubeOutcome | None) -> AttemptResult:
        state = attempt.state
        if state is AttemptState.INTERRUPTED:
            return self.interrupted(attempt)
        if state is AttemptState.LOST:
            assert attempt.tracker.watch_error is not None
            return self._left(attempt, lost_outcome(attempt.tracker.watch_error))
        if state is AttemptState.GAVE_UP:
            pod = attempt.tracker.current_pod()
            outcome = (self._outcomes.explain_pending(early, pod, job=attempt.tracker.job) if early is not None
                       else DEADLINE_GIVEN_UP)
            return self._finish(attempt, stop, outcome)
        return self._finish(attempt, stop, None)

    def _wait_limit(self, attempt: LiveAttempt, stop: StopSignal) -> float:
        now = time.monotonic()
        limit = attempt.deadline - now
        if stop.deadline is not None:
            limit = min(limit, stop.deadline - now)
        return limit

    def _note_sightings(self, attempt: LiveAttempt, pod: KubeObject) -> None:
        """When we first saw the pod scheduled, the container running, the container ended."""
        if attempt.pod_seen_at is None:
            attempt.pod_seen_at = utcnow()
        if attempt.scheduled_at is None and condition(pod, "PodScheduled"):
            attempt.scheduled_at = utcnow()
        state = container_state(pod)
        # A start first seen as an end (the running state fell between two looks) is no
        # sighting of the start: the kubelet's seconds then stand alone.
        if attempt.seen_started is None and state.get("running"):
            attempt.seen_started = utcnow()
        if attempt.seen_finished is None and state.get("terminated"):
            attempt.seen_finished = utcnow()

    def _early_verdict(self, attempt: LiveAttempt, pod: KubeObject | None) -> KubeOutcome | None:
        """A verdict before the container ever ran (image pull, unschedulable...), or None."""
        if pod is not None and container_started(pod, CONTAINER):
            return None
        settings = self._settings
        if attempt.awaiting_admission:
            return admission_verdict(attempt, settings.admission_timeout_seconds)
        if not self._may_give_up(attempt, pod):
            return None
        return pending_outcome(
            pod, container=CONTAINER, now=utcnow(), created_at=attempt.clock_start,
            scheduled_at=attempt.scheduled_at, pod_seen_at=attempt.pod_seen_at,
            scheduling_timeout=settings.scheduling_timeout_seconds,
            start_timeout=settings.start_timeout_seconds,
        )

    def _refused(self, attempt: LiveAttempt, pod: KubeObject | None) -> KubeOutcome | None:
        """The API server refused the Job's pod (quota, LimitRange, a webhook), or None.

        Nothing but the Job's ``FailedCreate`` Events tells it, and the session watches
        only Jobs and Pods: while the Job has no pod, its Events are listed on the
        attempt's backing-off schedule, at most once per interval.
        """
        tracker = attempt.tracker
        if pod is not None or tracker.job is None or tracker.job_gone or not job_synced(tracker.job):
            # Not synced by the Job controller yet (behind its queue, or suspended in a
            # Kueue queue): no pod was tried, so none can have been refused. At P=500 on
            # a throttled controller these lists were 5.4 per Job, each a scan of the
            # namespace's Events; the Job's first sync wakes the attempt (its watch).
            return None
        age = (utcnow() - attempt.clock_start).total_seconds()
        if not attempt.events_schedule.due(time.monotonic(), age=age):
            return None
        return self._outcomes.refusal(attempt)

    def _may_give_up(self, attempt: LiveAttempt, pod: KubeObject | None) -> bool:
        """Cheap gate in front of ``pending_outcome``: a waiting reason, or time is up."""
        if pod is not None and container_state(pod).get("waiting"):
            return True
        return (utcnow() - attempt.clock_start).total_seconds() >= self._give_up_from(attempt, pod)

    def _give_up_from(self, attempt: LiveAttempt, pod: KubeObject | None) -> float:
        """Seconds after the Job's creation (or admission) before ``pending_outcome`` may give up."""
        settings = self._settings
        if pod is None:
            return podless_limit(settings.scheduling_timeout_seconds, settings.start_timeout_seconds)
        seen_after = ((attempt.pod_seen_at - attempt.clock_start).total_seconds()
                      if attempt.pod_seen_at is not None else 0.0)
        return min(settings.scheduling_timeout_seconds + max(seen_after, 0.0), settings.start_timeout_seconds)

    def _finished(self, attempt: LiveAttempt, pod: KubeObject | None) -> bool:
        """The attempt is over: nothing more will run (the log pumps may still be reading)."""
        tracker = attempt.tracker
        if attempt.preempted and pod is None:
            return True  # taken back before its pod existed (or after it was removed)
        if pod is not None:
            if tracker.pod_gone(pod) or pod_terminal(pod) or container_state(pod).get("terminated"):
                return True
            if (pod.get("metadata") or {}).get("deletionTimestamp") and not container_started(pod, CONTAINER):
                return True
        if tracker.job_gone:
            # A Job deleted with --cascade=orphan leaves its pod running with no owner: the
            # attempt follows that pod to its end (our own deadline still holds) instead of
            # freeing the phase while it runs. Without a pod there is nothing to follow.
            return pod is None or not container_started(pod, CONTAINER)
        if job_outcome(tracker.job) is None:
            return False
        # The Job watch and the Pod watch are independent: a Job's Failed condition can
        # arrive before the pod's final state, and a killed container may still be
        # stopping. Give the pod a short grace to catch up so its last lines are read.
        now = time.monotonic()
        if attempt.job_done_at is None:
            attempt.job_done_at = now
        return now - attempt.job_done_at >= self._grace

    def _report_pod(self, attempt: LiveAttempt, pod: KubeObject, on_update: AttemptUpdate) -> None:
        meta = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        key = f"{meta.get('name')}/{node}"
        if attempt.reported_pod != key:
            attempt.reported_pod = key
            on_update(AttemptProgress(pod_name=meta.get("name"), pod_uid=meta.get("uid"), node=node))

    # -- endings ---------------------------------------------------------------------

    def interrupted(self, attempt: LiveAttempt) -> AttemptResult:
        return self._left(attempt, INTERRUPTED)

    def _left(self, attempt: LiveAttempt, outcome: KubeOutcome) -> AttemptResult:
        """The Job may still run: its attempt stays open for the next session to adopt.

        Finishing it here would free the phase for a new attempt while the old pod might
        still be running (a SIGTERM's grace ran out, or the watches gave up).
        """
        self._logs.abort(attempt)
        result = self._outcomes.result(attempt, outcome, attempt.tracker.current_pod())
        result.left_running = True
        return result

    def _finish(self, attempt: LiveAttempt, stop: StopSignal, outcome: KubeOutcome | None) -> AttemptResult:
        if not self._collect_logs(attempt, stop):
            return self.interrupted(attempt)
        failed = attempt.store_error()
        if failed is not None:
            raise failed
        if outcome is None:
            self._settle_preemption(attempt)
            if attempt.preempted:
                self._await_kueue_stop(attempt)  # the pod's end can come before the Job's suspend
                outcome = self._outcomes.preempted(attempt)
            else:
                outcome = self._classify_end(attempt)
        pod = attempt.tracker.current_pod()
        if not attempt.outs:
            self._logs.open(attempt, pod)
            for out in attempt.outs.values():
                out.write(f"[batchdrain] no output: {outcome.message}\n".encode(), content=False)
        result = self._outcomes.result(attempt, outcome, pod)
        refused = tell(self._api, attempt, "Classified", f"{result.failure_class.value}: {result.message}; logs: "
                       + ", ".join(p.url for p in result.logs), warning=not result.succeeded)
        gone = namespace_gone(refused, self._api.namespace) if refused is not None else None
        if gone is not None:
            self._namespace_lost(result, gone)
        self._clean_up(attempt, result)
        return result

    def _collect_logs(self, attempt: LiveAttempt, stop: StopSignal) -> bool:
        """Let the pumps read to the end (bounded); False when the SIGTERM grace ran out first."""
        if attempt.tracker.container_done():
            for pump in attempt.pumps:
                pump.cut_follow()
        if attempt.pumps and not self._logs.join(attempt, stop, tick=self._tick):
            if stop.stopping and stop.expired():
                return False
            attempt.notes.append(f"log streaming did not finish within {LOG_JOIN_SECONDS:g}s")
            self._logs.abort(attempt, join_seconds=None)
        return True

    def _clean_up(self, attempt: LiveAttempt, result: AttemptResult) -> None:
        cleanup = remove_attempt_objects(self._api, attempt)
        if cleanup.job_deleted:
            self._inventory.job_deleted(attempt.job_name, gone_seen=attempt.tracker.job_gone)
        if cleanup.errors:
            result.raw_status = {**(result.raw_status or {}), "cleanup_errors": cleanup.errors}
            self.owed.add(cleanup.owed)

    def _namespace_lost(self, result: AttemptResult, gone: str) -> None:
        """The namespace went under the attempt: say so, halt the session, charge nothing.

        A phase that exited 0 before (``completed_before_deletion``) keeps its success;
        one the deletion killed is not the phase's failure.
        """
        self.namespace_lost = self.namespace_lost or f"{gone} (deleted mid-drain)"
        if not result.succeeded:
            result.message = f"{gone}: {result.message}"
            result.charged = False

    def _stop_preempted(self, attempt: LiveAttempt) -> None:
        """Kueue took the Job back: delete it now, not after the logs.

        Kueue requeues a preempted workload and admits the same Job again as soon as
        there is quota: found on the real cluster, where the Job was admitted again 3 s
        after its preemption, while its first pod was still in its SIGTERM grace, and ran
        the phase to the end in a second pod that this attempt never recorded. Without
        its Job nothing can be admitted again; the pod being stopped is still held by
        the logs finalizer, so its log is read to the end as before.

        Not before Kueue has finished stopping it, though: after the suspend it patches
        the Job twice more and only then records the ``Stopped`` Event that says why; a
        Job deleted in between fails those patches and the Event never comes (seen in
        CI: the attempt said only "suspended again"). Re-admission needs the quota freed
        and the workload requeued, which comes after the stop, so the wait costs nothing.
        """
        attempt.preemption_stopped = True
        self._await_kueue_stop(attempt)
        try:
            self._api.delete_job(attempt.job_name, propagation="Background")
        except NotFound:
            pass
        except KubeError as err:
            attempt.notes.append(f"deleting the preempted Job failed: {type(err).__name__}: {err.message}")

    @staticmethod
    def _await_kueue_stop(attempt: LiveAttempt) -> None:
        """Until Kueue has finished stopping the Job (bounded): its ``Stopped`` Event follows."""
        tracker = attempt.tracker
        tracker.wait_for(lambda: tracker.job_gone or not kueue_stopping(tracker.job), KUEUE_STOP_WAIT_SECONDS)

    def _settle_preemption(self, attempt: LiveAttempt) -> None:
        """A queued Job's pod killed from outside: wait (briefly) for the Job to say whether
        Kueue suspended it. Kueue suspends first and the pod goes after, but the two come
        on separate watches."""
        tracker = attempt.tracker
        if attempt.queue is None or attempt.preempted or clean_exit(tracker.current_pod()):
            return
        tracker.wait_for(lambda: suspended(tracker.job) or tracker.job_gone or job_outcome(tracker.job) is not None,
                         self._grace)
        if taken_back(attempt, tracker.job) and not tracker.job_gone:
            attempt.preempted = True

    def _classify_end(self, attempt: LiveAttempt) -> KubeOutcome:
        tracker = attempt.tracker
        # The Job's condition lags the pod by the Job controller's sync period (~1s).
        # It only changes the verdict for failures (DeadlineExceeded...); a clean exit 0
        # is a success whatever the Job says later, so it does not wait for it.
        if job_outcome(tracker.job) is None and not tracker.job_gone and not clean_exit(tracker.current_pod()):
            tracker.wait_for(lambda: job_outcome(tracker.job) is not None or tracker.job_gone, self._grace)
        return self._outcomes.classify(attempt, tracker.current_pod())


__all__ = ["Supervisor"]
