"""What the executor holds for one attempt in flight: its launch, tracker, logs and clocks.

Shared by the parts that drive an attempt (supervise, logs, outcome, cleanup); only the
worker thread running the attempt mutates it, log pump threads only read ``abort``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

from batchdrain.domain import utcnow
from batchdrain.executors.base import AttemptLaunch
from batchdrain.executors.kubernetes.attempt import AttemptState
from batchdrain.executors.kubernetes.logs import LogPump, StoredLog
from batchdrain.executors.kubernetes.pacing import Backoff
from batchdrain.executors.kubernetes.watches import Tracker
from batchdrain.logstore import LogStoreError

# activeDeadlineSeconds should end the Job; past it plus this, we stop waiting anyway.
DEADLINE_MARGIN_SECONDS = 60.0


def deadline_for(launch: AttemptLaunch, start: dt.datetime) -> float:
    """Monotonic instant past which the controller stops waiting for this attempt.

    ``start``: the Job's creation, or its admission by Kueue (from when its own
    ``activeDeadlineSeconds`` counts too).
    """
    elapsed = (utcnow() - start).total_seconds()
    budget = launch.timeout_seconds + DEADLINE_MARGIN_SECONDS - max(elapsed, 0.0)
    return time.monotonic() + max(budget, 1.0)


@dataclass
class LiveAttempt:
    launch: AttemptLaunch
    job_name: str
    tracker: Tracker
    created_at: dt.datetime
    deadline: float
    resume_logs: bool = False
    state: AttemptState = AttemptState.WAITING
    outs: dict[str, StoredLog] = field(default_factory=dict)
    pumps: list[LogPump] = field(default_factory=list)
    abort: threading.Event = field(default_factory=threading.Event)
    reported_pod: str | None = None
    job_done_at: float | None = None
    # When we first saw the pod scheduled, by our clock: the start timeout counts from
    # here, so skew between our clock and the API server's cannot fire it early.
    scheduled_at: dt.datetime | None = None
    # When we first saw the Job's pod: the scheduling timeout counts from here, not from
    # the Job's creation (a Job controller behind its queue is not the pod unschedulable).
    pod_seen_at: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)
    # Our own sub-second sightings of the container running and ended (the kubelet's
    # times have whole seconds): see ``classify.readers.container_seconds``.
    seen_started: dt.datetime | None = None
    seen_finished: dt.datetime | None = None
    # When to list the Job's Events while it has no pod (a refused pod shows nowhere else).
    events_schedule: Backoff = field(default_factory=Backoff)
    # The Kueue LocalQueue the Job was submitted to (created suspended), else None; when
    # we first saw it admitted; whether a version of the Job was seen resumed (not
    # suspended); whether one was seen suspended again after that (preempted).
    queue: str | None = None
    admitted_at: dt.datetime | None = None
    job_resumed: bool = False
    preempted: bool = False
    preemption_stopped: bool = False  # its Job deleted at once (``Supervisor._stop_preempted``)
    # resourceVersion of the first sighting of the Job's pod (``admission.taken_back``).
    pod_version: int | None = None

    @property
    def awaiting_admission(self) -> bool:
        return self.queue is not None and self.admitted_at is None

    @property
    def clock_start(self) -> dt.datetime:
        """Where the scheduling and start limits count from: the admission, else the creation."""
        return self.admitted_at or self.created_at

    def store_error(self) -> LogStoreError | None:
        """The first log store failure one of the attempt's pumps hit, if any."""
        return next((p.store_error for p in self.pumps if p.store_error is not None), None)
