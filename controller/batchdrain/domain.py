"""Value types shared by every layer: phase states, failure classes, specs and outcomes.

They live at the bottom of the layer stack so that policy modules (selection,
classification, reporting) can be pure functions over plain values, and so the
database and Kubernetes seams translate to and from one vocabulary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchdrain.spec_checks import spec_problem, timeout_of


class BadInput(ValueError):
    """Input from a user or a file that we refuse; the CLI prints it as one line, exit 2."""


class PhaseState(StrEnum):
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class FailureClass(StrEnum):
    """Why an attempt ended. ``succeeded`` is a class too so every attempt has exactly one."""

    SUCCEEDED = "succeeded"
    EXIT_CODE = "exit_code"
    OOM_KILLED = "oom_killed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    EVICTED = "evicted"
    IMAGE_PULL = "image_pull"
    CONFIG_ERROR = "config_error"
    UNSCHEDULABLE = "unschedulable"
    # The API server refused to create the pod (ResourceQuota, LimitRange, PodSecurity, a
    # webhook): it never existed. Not transient: the same namespace policy refuses the same
    # pod again, so repeated refusals park the phase like any repeated failure.
    ADMISSION_REFUSED = "admission_refused"
    POD_DELETED = "pod_deleted"
    NODE_LOST = "node_lost"
    CONTROLLER_INTERRUPTED = "controller_interrupted"
    API_ERROR = "api_error"
    LAUNCH_ERROR = "launch_error"
    # Kueue took the Job's quota back after admitting it (a higher-priority workload, a
    # fair-sharing reclaim, an eviction): the platform's decision, never the phase's.
    PREEMPTED = "preempted"


# Classes caused by the platform rather than by the phase's own code: a retry may
# well succeed, so they never count towards smart-retry parking.
TRANSIENT_CLASSES: frozenset[FailureClass] = frozenset(
    {
        FailureClass.EVICTED,
        FailureClass.NODE_LOST,
        FailureClass.POD_DELETED,
        FailureClass.CONTROLLER_INTERRUPTED,
        FailureClass.API_ERROR,
        FailureClass.PREEMPTED,
    }
)

# Classes that explain a very short attempt, so it is not flagged as an "instant complete".
FAST_FAILURE_CLASSES: frozenset[FailureClass] = frozenset(
    {
        FailureClass.IMAGE_PULL,
        FailureClass.CONFIG_ERROR,
        FailureClass.LAUNCH_ERROR,
        FailureClass.CONTROLLER_INTERRUPTED,
        FailureClass.API_ERROR,
        FailureClass.POD_DELETED,
        FailureClass.UNSCHEDULABLE,
        FailureClass.ADMISSION_REFUSED,
    }
)


class LogMode(StrEnum):
    SPLIT = "split"
    COMBINED = "combined"


def _pairs(mapping: dict[Any, Any] | None) -> tuple[tuple[str, str], ...]:
    if not mapping:
        return ()
    return tuple((str(k), str(v)) for k, v in mapping.items())


def _optional_str(value: object) -> str | None:
    return str(value) if value is not None else None


@dataclass(frozen=True)
class PhaseSpec:
    """What to run for a phase. ``command`` items are templates (``{run_id}`` etc.)."""

    command: tuple[str, ...]
    image: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    cpu: str | None = None
    memory: str | None = None
    image_pull_policy: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    # Kueue's LocalQueue, the pods' PriorityClass, Kueue's WorkloadPriorityClass: each
    # overrides the session's default (--queue-name, --priority-class-name, ...).
    queue: str | None = None
    priority_class: str | None = None
    workload_priority_class: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "image": self.image,
            "env": dict(self.env),
            "timeout_seconds": self.timeout_seconds,
            "cpu": self.cpu,
            "memory": self.memory,
            "image_pull_policy": self.image_pull_policy,
            "node_selector": dict(self.node_selector),
            **{key: value for key, value in (("queue", self.queue), ("priority_class", self.priority_class),
                                             ("workload_priority_class", self.workload_priority_class))
               if value is not None},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhaseSpec:
        """The spec of a backlog row; ``BadInput`` naming the first field that is wrong."""
        problem = spec_problem(data)
        if problem is not None:
            raise BadInput(problem)
        timeout = timeout_of(data)
        return cls(
            command=tuple(data["command"]),
            image=data.get("image"),
            env=_pairs(data.get("env")),
            timeout_seconds=float(timeout) if timeout is not None else None,
            cpu=_optional_str(data.get("cpu")),
            memory=_optional_str(data.get("memory")),
            image_pull_policy=data.get("image_pull_policy"),
            node_selector=_pairs(data.get("node_selector")),
            queue=data.get("queue"),
            priority_class=data.get("priority_class"),
            workload_priority_class=data.get("workload_priority_class"),
        )

    def render_command(self, values: dict[str, str]) -> list[str]:
        """Substitute only the documented placeholders; other braces are left alone."""
        rendered = []
        for template in self.command:
            text = template
            for key, value in values.items():
                text = text.replace("{" + key + "}", value)
            rendered.append(text)
        return rendered


@dataclass(frozen=True, slots=True)
class Need:
    """A declared need of a phase that is not COMPLETE yet, as it stands."""

    phase_id: str
    state: PhaseState
    attempts_used: int  # since the need's last `batchdrain retry`
    parked_reason: str | None = None


@dataclass(frozen=True)
class Phase:
    """A phase as selection sees it: a snapshot row, no database handle."""

    run_id: str
    phase_id: str
    state: PhaseState
    attempts: int
    spec: PhaseSpec
    created_seq: int = 0
    retry_base: int = 0
    last_failure_class: str | None = None
    last_failure_reason: str | None = None
    parked_reason: str | None = None
    lease_owner: str | None = None
    # A failed phase is not retried before this (retry backoff); None: at once.
    eligible_at: dt.datetime | None = None
    # Higher first; within one priority the runs take turns, ``weight`` (the run's) phases each.
    priority: int = 0
    weight: int = 1
    # Declared dependencies (``needs``): whether it has any, and those not COMPLETE yet.
    declares_needs: bool = False
    unmet_needs: tuple[Need, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.run_id, self.phase_id)


@dataclass(frozen=True)
class AttemptHistoryItem:
    """The part of a past attempt that smart-retry parking compares."""

    failure_class: FailureClass
    exit_code: int | None
    first_error_line: str | None


@dataclass(frozen=True)
class RunCounts:
    queued: int = 0
    executing: int = 0
    complete: int = 0
    failed: int = 0
    skipped: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "executing": self.executing,
            "complete": self.complete,
            "failed": self.failed,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class LogPointer:
    """Where one stored log lives, and proof of what was stored."""

    stream: str  # "stdout", "stderr" or "combined"
    url: str
    size_bytes: int
    sha256: str
    # Why the stored bytes are not the whole log (the volume stayed full), else None.
    incomplete: str | None = None
    # Time writes spent waiting for space on a full volume (nothing lost by waiting).
    stalled_seconds: float = 0.0


@dataclass(frozen=True)
class AttemptProgress:
    """What an executor learns of a running attempt before it ends (Job name, pod, node).

    Written within about a second (``drain.progress`` batches them; a local process's
    pid at once, since adoption needs it to stop the process), and with the attempt's end
    if that comes first. Fields left ``None`` are not written.
    """

    job_name: str | None = None
    namespace: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    node: str | None = None
    started_at: dt.datetime | None = None
    # The local executor's process: adoption stops its group only on the same host.
    pid: int | None = None
    host: str | None = None
    # When Kueue admitted the Job (it was created suspended in a LocalQueue).
    admitted_at: dt.datetime | None = None


@dataclass
class AttemptResult:
    """What an executor observed. Classification fills failure_class and message."""

    failure_class: FailureClass
    message: str
    exit_code: int | None
    exit_code_reason: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    # When Kueue admitted the Job; None when no queue manages it (or it never was).
    admitted_at: dt.datetime | None = None
    container_seconds: float | None = None
    total_seconds: float | None = None
    first_error_line: str | None = None
    logs: list[LogPointer] = field(default_factory=list)
    log_mode: LogMode = LogMode.SPLIT
    job_name: str | None = None
    pod_names: list[str] = field(default_factory=list)
    pod_uid: str | None = None
    node: str | None = None
    image: str | None = None
    image_digest: str | None = None
    raw_status: dict[str, Any] | None = None
    # The work goes on without us (a Job left in place on SIGTERM): the attempt stays open
    # so the next session adopts it, instead of the phase being retried while it runs.
    left_running: bool = False
    # The controller cannot go on (its own log store failed): why, in one line. The
    # session stops starting attempts; nothing of it is charged to the phase.
    halt: str | None = None
    # False when the controller's own failure ended the attempt (lost API, namespace gone,
    # stopping before the Job existed): it does not count toward --max-attempts.
    charged: bool = True

    @property
    def succeeded(self) -> bool:
        return self.failure_class is FailureClass.SUCCEEDED


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
