"""Values that cross the database seam: what goes in (a new phase) and what comes out.

Plain frozen dataclasses (and one named tuple) over domain types, never SQLAlchemy
rows, so that callers above the seam (the drain loop, reports, the CLI) read typed
fields and cannot reach back into a session or a lazy load. The JSON columns (settings, identity, counts,
report, raw_status) stay JSON documents, handed out as read-only mappings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from batchdrain.domain import (
    AttemptProgress,
    AttemptResult,
    FailureClass,
    LogMode,
    LogPointer,
    Need,
    Phase,
    PhaseSpec,
    PhaseState,
)


class NewPhase(NamedTuple):
    """A phase to add to the backlog (a tuple: an import makes one per row, a million
    of them, and a frozen dataclass's ``__init__`` cost three times as much)."""

    run_id: str
    phase_id: str
    spec: PhaseSpec
    # Higher runs first (``fairshare``); the run's weight, when given, is set on its run.
    priority: int = 0
    run_weight: int | None = None
    # Phase ids of the same run that must be COMPLETE before this one runs.
    needs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PhaseStanding:
    """Where a phase stands, without its spec: what a dry run counts over the whole backlog."""

    run_id: str
    phase_id: str
    state: PhaseState
    attempts: int
    retry_base: int
    created_seq: int
    parked_reason: str | None
    lease_owner: str | None
    eligible_at: dt.datetime | None = None
    priority: int = 0
    declares_needs: bool = False
    unmet_needs: tuple[Need, ...] = ()
    # The mean duration of its succeeded attempts, if it has any (a forecast's basis).
    past_seconds: float | None = None


@dataclass(frozen=True)
class ImportCounts:
    """What one ``enqueue_stream`` added: phases, and runs that did not exist before."""

    phases: int
    new_runs: int


@dataclass(frozen=True, slots=True)
class AttemptOpening:
    """What the attempt row opened by a claim records: the command, image and identity it will run with."""

    command: tuple[str, ...]
    image: str | None
    identity: Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """A phase this session now holds, and the attempt row opened for it."""

    attempt_pk: int
    attempt: int
    phase: Phase


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptEnd:
    """What closing one attempt writes: its result, and where its phase goes.

    ``progress`` is what the executor reported that was not written yet (progress is
    written in batches); ``eligible_at`` is when the phase may be retried (None: at once).
    """

    attempt_pk: int
    result: AttemptResult
    phase_state: PhaseState
    parked_reason: str | None = None
    progress: AttemptProgress | None = None
    eligible_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRecord:
    """One drain session's row."""

    session_id: str
    status: str  # running | complete | interrupted | leaked | failed
    executor: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    ended_at: dt.datetime | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    identity: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[str, Any] | None = None
    # The session's report summary (schema batchdrain.report/v2; v1 reports also held
    # every attempt row), stored when the session ended. None when none was stored, and
    # from the reads that do not load it (``Database.sessions``, ``session(..., report=False)``).
    report: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRecord:
    """One attempt's row: what was launched, what was learnt while it ran, how it ended.

    Fields an attempt has not reached yet (a running attempt's end, a launch that failed
    before its pod existed) are ``None`` or empty.
    """

    attempt_pk: int
    session_id: str
    run_id: str
    phase_id: str
    attempt: int
    status: str  # running | finished
    executor: str
    command: tuple[str, ...]
    created_at: dt.datetime
    identity: Mapping[str, Any]
    image: str | None = None
    image_digest: str | None = None
    job_name: str | None = None
    namespace: str | None = None
    pod_names: tuple[str, ...] = ()
    pod_uid: str | None = None
    node: str | None = None
    exit_code: int | None = None
    exit_code_reason: str | None = None
    admitted_at: dt.datetime | None = None  # Kueue admitted the Job (None: no queue managed it)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    container_seconds: float | None = None
    total_seconds: float | None = None
    failure_class: FailureClass | None = None
    message: str | None = None
    first_error_line: str | None = None
    log_mode: LogMode | None = None
    logs: tuple[LogPointer, ...] = ()
    raw_status: Mapping[str, Any] | None = None
    adopted_by: str | None = None  # the session that took the attempt over, if one did

    @property
    def identity_session_id(self) -> str:
        """The session id the attempt ran with, as its identity recorded it."""
        return str(self.identity.get("session_id", self.session_id))


@dataclass(frozen=True, kw_only=True, slots=True)
class OrphanRecord:
    """A running attempt whose session stopped heart-beating: a candidate for adoption."""

    attempt: AttemptRecord
    # The attempt's phase (its spec above all): an adopted attempt is supervised as
    # its launch was, with the phase's own timeout, memory limit and environment.
    phase: Phase
    session_heartbeat_at: dt.datetime
    # The holding session's identity (its controller's host, pid, pod) and the phase's
    # lease: whether the holder is provably gone, or how long its phase waits for it.
    session_identity: Mapping[str, Any] = field(default_factory=dict)
    lease_expires_at: dt.datetime | None = None
    # The local executor's process, as ``update_attempt`` recorded it: adoption stops
    # the process group only on the same host.
    pid: int | None = None
    host: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DurationStats:
    """One duration measure over a session's attempts (seconds, rounded to 3 places)."""

    count: int = 0
    min: float | None = None
    median: float | None = None
    mean: float | None = None
    p95: float | None = None
    max: float | None = None

    def to_json(self) -> dict[str, float | int | None]:
        return {"count": self.count, "min": self.min, "median": self.median, "mean": self.mean,
                "p95": self.p95, "max": self.max}


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptTally:
    """What a report says about all of a session's attempts, computed by the database."""

    by_class: Mapping[str, int]  # failure class (or "unfinished") -> attempts
    finished: int
    # container_seconds, total_seconds, controller_overhead_seconds, queue_wait_seconds
    durations: Mapping[str, DurationStats]

    @property
    def attempts(self) -> int:
        return sum(self.by_class.values())

    def counts(self) -> dict[str, Any]:
        """The report's ``counts`` as far as the attempts give them."""
        succeeded = self.by_class.get(FailureClass.SUCCEEDED.value, 0)
        return {"attempts": self.attempts, "succeeded": succeeded, "failed": self.finished - succeeded,
                "unfinished": self.attempts - self.finished, "by_class": dict(self.by_class)}
