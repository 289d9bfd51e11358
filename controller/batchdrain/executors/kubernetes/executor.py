"""The ``kubernetes`` executor: one Job per attempt, watched, logged, classified, cleaned up.

A thin facade over the parts of this package:

* ``begin()`` detects whether the cluster splits log streams (``capabilities``) and
  starts exactly one watch for the session's Jobs and one for its Pods (``watches``).
* ``execute()`` runs on one of the drain loop's worker threads and blocks for one
  attempt: it reports the Job name *before* creating it (so a crash leaves a row that
  can be adopted), creates it paced by a shared rate limiter (``pacing``), and hands
  the attempt to the ``supervise`` loop (the state machine of ``attempt``, logs from
  ``logs``, results from ``outcome``, deletion from ``cleanup``). AlreadyExists means
  a previous controller got there first: the Job is taken over (``adoption``).
* ``adopt()`` takes over an orphan of a dead session the same way.
* On SIGTERM (``StopSignal``) collection goes on until the grace deadline, then the
  attempt is ``controller_interrupted`` and its Job (and the logs finalizer, so the
  logs survive) left for the next session.
* ``end()`` stops the watches and audits what of the session is still there.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, LogMode, utcnow
from batchdrain.executors.base import AttemptLaunch, AttemptUpdate, OrphanAttempt, StopSignal, store_failure
from batchdrain.executors.kubernetes.adoption import attempt_selector, take_over
from batchdrain.executors.kubernetes.capabilities import detect_log_mode
from batchdrain.executors.kubernetes.cleanup import LEAK_GRACE_SECONDS, audit_leaks, remove_attempt_objects, retry_owed
from batchdrain.executors.kubernetes.events import tell
from batchdrain.executors.kubernetes.live import LiveAttempt, deadline_for
from batchdrain.executors.kubernetes.logbook import LogBook
from batchdrain.executors.kubernetes.outcome import Outcomes, crash_result
from batchdrain.executors.kubernetes.pacing import RateLimiter
from batchdrain.executors.kubernetes.supervise import Supervisor
from batchdrain.executors.kubernetes.watches import Hub, SessionWatches, Tracker
from batchdrain.jobspec import JobSpecBuilder
from batchdrain.kube import AlreadyExists, KubeApi, KubeError, NotFound
from batchdrain.logstore import LogSink, LogStoreError
from batchdrain.settings import Settings

# How often an attempt looks again while the clock decides what happens next (no pod
# yet, a verdict before the start, a grace running). It reads only in-memory state
# fed by the watches; it never calls the API server.
TICK_SECONDS = 0.25
# The longest an attempt sleeps when nothing happens, as a safety net: every change it
# waits for (watch events, failures, a stop request) wakes it anyway.
IDLE_LOOK_SECONDS = 10.0
# A terminated pod's Job condition (e.g. DeadlineExceeded) follows within moments.
JOB_CONDITION_GRACE_SECONDS = 5.0


class KubernetesExecutor:
    """``Executor`` running each attempt as a Job through a ``KubeApi`` seam."""

    name = "kubernetes"

    def __init__(self, api: KubeApi, settings: Settings, *, log_mode: LogMode | None = None,
                 watch_timeout_seconds: int = 300, tick_seconds: float = TICK_SECONDS,
                 idle_seconds: float = IDLE_LOOK_SECONDS,
                 job_condition_grace_seconds: float = JOB_CONDITION_GRACE_SECONDS) -> None:
        self._api = api
        self._settings = settings
        self._builder = JobSpecBuilder(settings, namespace=api.namespace)
        self._limiter = RateLimiter(settings.job_create_rate)
        self._hub = Hub()
        self._watches = SessionWatches(api, self._hub, failure_budget_seconds=settings.retry_max_seconds * 2,
                                       watch_timeout_seconds=watch_timeout_seconds)
        self._logs = LogBook(api)
        self._outcomes = Outcomes(api, settings, self._logs)
        self._supervisor = Supervisor(api, settings, logs=self._logs, outcomes=self._outcomes,
                                      inventory=self._watches.inventory,
                                      tick_seconds=tick_seconds, idle_seconds=idle_seconds,
                                      job_condition_grace_seconds=job_condition_grace_seconds)
        self._forced_mode = log_mode
        self._adopted_jobs: set[str] = set()
        self._left: set[str] = set()
        self._left_lock = threading.Lock()
        self._session_id: str | None = None
        self._facts: dict[str, Any] = {"executor": self.name, "namespace": api.namespace}
        # Set once the API server is out of reach past the retry budget: from then on the
        # session starts nothing new (see ``unavailable``).
        self._lost: str | None = None
        # The stop signals whose request wakes every attempt (one per session, usually).
        self._heard: list[StopSignal] = []
        self._heard_lock = threading.Lock()

    @property
    def log_mode(self) -> LogMode:
        return self._logs.mode

    # -- session ------------------------------------------------------------------

    def begin(self, *, session_id: str, sink: LogSink) -> None:
        """Detect log streams, start the session's two watches and wait for their lists.

        Raises ``KubeError`` when the watches cannot even list: the session cannot run.
        """
        self._session_id = session_id
        self._logs.sink = sink
        if self._forced_mode is None:
            found = detect_log_mode(self._api)
            self._logs.mode, why = found.mode, found.reason
            if found.server_version is not None:
                self._facts["server_version"] = found.server_version
        else:
            self._logs.mode, why = self._forced_mode, "set by configuration"
        self._facts.update({"log_mode": self._logs.mode.value, "log_mode_reason": why})
        self._watches.own = session_id
        self._watches.acquire(session_id)

    def unavailable(self) -> str | None:
        failure = self._hub.failure
        if failure is not None and self._lost is None:
            self._lost = f"lost the Kubernetes API: {failure.message}"
        if self._supervisor.namespace_lost is not None and self._lost is None:
            self._lost = self._supervisor.namespace_lost
        return self._lost

    def end(self) -> list[str]:
        """Retry the removals that failed, list Jobs and Pods of the session (and adoptions)
        still there, stop the watches."""
        if self._session_id is None:
            self._watches.stop_all()
            return []
        # The inventory is only as fresh as the watches: stale once they failed or stopped.
        watching = self._hub.failure is None and self._watches.running(self._session_id)
        grace = LEAK_GRACE_SECONDS if watching else 0.0
        try:
            failed_again = retry_owed(self._api, self._supervisor.owed.take(), self._watches.inventory)
            leaks = audit_leaks(self._api, session_id=self._session_id, inventory=self._watches.inventory,
                                adopted_jobs=self._adopted_jobs,
                                left_jobs=frozenset(self._left), grace_seconds=grace)
            return leaks + [why for target, why in failed_again if target in leaks]
        finally:
            self._watches.stop_all()

    def holder_pod_gone(self, namespace: str, name: str) -> bool | None:
        """Another controller's pod, looked up when it ran in this namespace (the seam's)."""
        if namespace != self._api.namespace:
            return None
        try:
            self._api.get_pod(name)
        except NotFound:
            return True
        except KubeError:
            return None
        return False

    def left_for_adoption(self) -> list[str]:
        """Jobs this session left running on purpose for the next one (SIGTERM, API lost)."""
        return [f"job/{name}" for name in sorted(self._left)]

    def describe(self) -> dict[str, Any]:
        return dict(self._facts)

    # -- attempts -----------------------------------------------------------------

    def execute(self, launch: AttemptLaunch, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        try:
            self._hear(stop)
            return self._noted(self._execute(launch, stop, on_update))
        except LogStoreError as err:
            # Before the Job exists (a note for an attempt that never ran): nothing runs on.
            return store_failure(err, log_mode=self._logs.mode)
        except Exception as err:
            # Never raise to the drain loop: an executor bug is still a recorded attempt.
            return _left_for_adoption(crash_result(err))

    def adopt(self, orphan: OrphanAttempt, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        try:
            self._hear(stop)
            return self._noted(self._adopt(orphan, stop, on_update))
        except LogStoreError as err:
            return store_failure(err, log_mode=self._logs.mode)
        except Exception as err:
            return _left_for_adoption(crash_result(err))

    def _hear(self, stop: StopSignal) -> None:
        """Have a stop request wake every attempt: they sleep on their watch events."""
        with self._heard_lock:
            if any(heard is stop for heard in self._heard):
                return
            self._heard.append(stop)
        stop.on_request(self._hub.poke_all)

    def _noted(self, result: AttemptResult) -> AttemptResult:
        if result.left_running and result.job_name:
            with self._left_lock:
                self._left.add(result.job_name)
        return result

    def _execute(self, launch: AttemptLaunch, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        name = self._builder.name(launch.identity)
        body = self._builder.build(launch)
        on_update(AttemptProgress(job_name=name, namespace=self._api.namespace))
        tracker = self._hub.register(name)  # before create: no event can be missed
        try:
            refused = self._not_now(launch, name, stop)
            if refused is not None:
                return refused
            created_at = utcnow()
            try:
                tracker.on_job("ADDED", self._api.create_job(body))
            except AlreadyExists:
                # Same deterministic name = same attempt: a previous controller created it.
                return self._take_over(launch, tracker, stop, on_update, existing=None,
                                       note="Job already existed: adopted",
                                       story=f"session {self._session_id} adopted this existing Job "
                                             f"(attempt {launch.identity.attempt} of phase "
                                             f"{launch.identity.phase_id!r}, run {launch.identity.run_id!r})")
            except KubeError as err:
                return self._launch_failure(launch, name, err)
            queue = self._builder.queue(launch)
            # Queued: suspended until Kueue admits it, and its deadline counts from then.
            attempt = LiveAttempt(launch=launch, job_name=name, tracker=tracker, created_at=created_at,
                                  deadline=math.inf if queue else deadline_for(launch, created_at), queue=queue)
            ident = launch.identity
            tell(self._api, attempt, "AttemptStarted", f"session {ident.session_id}: attempt {ident.attempt} of "
                 f"phase {ident.phase_id!r} (run {ident.run_id!r})")
            return self._supervise(attempt, stop, on_update)
        finally:
            self._hub.unregister(name)

    def _not_now(self, launch: AttemptLaunch, name: str, stop: StopSignal) -> AttemptResult | None:
        """Why the Job is not created at all: the controller is stopping, or the API is lost."""
        if stop.stopping or not self._limiter.acquire(timeout=max(launch.timeout_seconds, 1.0), cancel=stop.event):
            return self._outcomes.never_ran(
                launch, name, failure_class=FailureClass.CONTROLLER_INTERRUPTED,
                message="controller stopping: the Job was not created", exit_code_reason="the Job was never created",
                note="the Job was not created: controller stopping", charged=False)
        if self._lost is not None:
            # Claimed just before the API was lost: another create would only burn the
            # retry budget again. api_error is transient: a later session retries.
            return self._outcomes.never_ran(
                launch, name, failure_class=FailureClass.API_ERROR,
                message=f"the Job was not created: {self._lost}", exit_code_reason="the Job was never created",
                note=f"the Job was not created: {self._lost}", charged=False)
        return None

    def _adopt(self, orphan: OrphanAttempt, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        launch = orphan.launch
        name = orphan.job_name or self._builder.name(launch.identity)
        on_update(AttemptProgress(job_name=name, namespace=self._api.namespace))
        session = launch.identity.session_id
        self._watches.acquire(session)
        tracker = self._hub.register(name)
        try:
            try:
                job = self._api.get_job(name)
            except NotFound:
                errors = self._release_leftovers(launch, tracker)
                result = self._gone_before_adoption(orphan, name)
                if errors:
                    result.raw_status = {**(result.raw_status or {}), "cleanup_errors": errors}
                return result
            except KubeError as err:
                return self._launch_failure(launch, name, err, adopting=True)
            self._adopted_jobs.add(name)
            return self._take_over(launch, tracker, stop, on_update, existing=job,
                                   note=f"adopted from session {orphan.session_id}",
                                   story=f"session {self._session_id} adopted this Job after session "
                                         f"{orphan.session_id} stopped heart-beating")
        finally:
            self._hub.unregister(name)
            self._watches.release(session)

    def _release_leftovers(self, launch: AttemptLaunch, tracker: Tracker) -> list[dict[str, Any]]:
        """Let go of pods a controller killed between deleting the Job and releasing them.

        Such a pod is still held by the logs finalizer, and nothing else would ever
        remove it: the leak the cluster chaos test found under load.
        """
        try:
            pods, _ = self._api.list_pods(attempt_selector(launch))
        except KubeError as err:
            return [{"op": "list_pods", **err.as_status()}]
        for pod in pods:
            tracker.on_pod("ADDED", pod)
        cleanup = remove_attempt_objects(self._api, LiveAttempt(launch, tracker.job_name, tracker, utcnow(), 0.0))
        self._supervisor.owed.add(cleanup.owed)
        return cleanup.errors

    def _gone_before_adoption(self, orphan: OrphanAttempt, name: str) -> AttemptResult:
        if orphan.pod_uid is None:
            return self._outcomes.never_ran(
                orphan.launch, name, failure_class=FailureClass.CONTROLLER_INTERRUPTED,
                message="no Job found on adoption: the previous controller died or lost the API before creating it",
                exit_code_reason="the Job was never created", note="adoption: no Job found", charged=False)
        return self._outcomes.never_ran(
            orphan.launch, name, failure_class=FailureClass.POD_DELETED,
            message="Job was gone when a new session came to adopt it (deleted or expired)",
            exit_code_reason="the Job and its pod were gone before adoption", note="adoption: the Job was gone",
            pod_uid=orphan.pod_uid)

    def _take_over(self, launch: AttemptLaunch, tracker: Tracker, stop: StopSignal, on_update: AttemptUpdate, *,
                   existing: dict[str, Any] | None, note: str, story: str) -> AttemptResult:
        try:
            job = existing if existing is not None else self._api.get_job(tracker.job_name)
            attempt = take_over(self._api, launch=launch, job=job, tracker=tracker, note=note)
        except KubeError as err:
            return self._launch_failure(launch, tracker.job_name, err, adopting=True)
        tell(self._api, attempt, "Adopted", story)
        return self._supervise(attempt, stop, on_update)

    def _supervise(self, attempt: LiveAttempt, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        try:
            return self._supervisor.supervise(attempt, stop, on_update)
        except LogStoreError as err:
            # Our log store failed, not the phase: the attempt stays open for the next
            # session (its Job goes on, its logs resume from what the store holds), and
            # this session stops starting new ones.
            self._logs.abort(attempt)
            return store_failure(err, job_name=attempt.job_name, left_running=True, log_mode=self._logs.mode)

    def _launch_failure(self, launch: AttemptLaunch, name: str, err: KubeError, *,
                        adopting: bool = False) -> AttemptResult:
        result, lost = self._outcomes.launch_failure(launch, name, err, adopting=adopting)
        if lost is not None:
            self._lost = lost
        return result


def _left_for_adoption(result: AttemptResult) -> AttemptResult:
    """An executor bug may strike while the attempt's Job runs (or after its create was
    sent): the attempt stays open, so that the next session adopts the Job and its logs
    instead of a second attempt running the phase beside it (seen on the kwok rig: a
    crashed attempt went back QUEUED with its Job still there)."""
    result.message += "; Job (if it was created) left in place for the next session to adopt"
    result.left_running = True
    return result
