"""Which phases a drain session runs, and why every other phase waits: pure functions.

Higher priorities first; within a priority, queued phases in fair order (the runs take
turns, ``fairshare``) before retries. Safety first (SPEC section 2): queued work goes
before retries of the same priority, and a FAILED phase is
not retried while its run still has QUEUED phases, because in practice those queued
phases are often what the failed one depends on. The plan is a function of the
backlog snapshot and the options only, so ``--dry-run`` shows exactly what a real
session would do.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from batchdrain.dependencies import needs_reason
from batchdrain.domain import BadInput, Need, Phase, PhaseState
from batchdrain.fairshare import fair_order
from batchdrain.forecast import Forecast


@dataclass(frozen=True)
class SelectionOptions:
    run_ids: tuple[str, ...] = ()
    batch_size: int | None = None
    max_attempts: int = 3
    skip_runs_with_queued: bool = True
    include_parked: bool = False
    # The clock a plan is made at: a failed phase whose retry backoff (``eligible_at``)
    # runs past it waits. None: backoff is not looked at (every retry is due).
    now: dt.datetime | None = None


@dataclass(frozen=True)
class Selected:
    phase: Phase
    why: str


@dataclass(frozen=True)
class Skipped:
    phase: Phase
    reason: str


@dataclass(frozen=True)
class Plan:
    selected: tuple[Selected, ...]
    skipped: tuple[Skipped, ...]

    @property
    def phases(self) -> list[Phase]:
        return [s.phase for s in self.selected]


def check_run_filter(run_ids: Iterable[str], known_runs: set[str]) -> None:
    unknown = sorted(set(run_ids) - known_runs)
    if unknown:
        listing = ", ".join(repr(r) for r in unknown)
        raise BadInput(f"unknown run id {listing} (see `batchdrain runs`)")


def plan(phases: Iterable[Phase], options: SelectionOptions) -> Plan:
    """Order and filter a backlog snapshot into the phases this session will run."""
    wanted = set(options.run_ids)
    snapshot = [p for p in phases if not wanted or p.run_id in wanted]
    # Queued phases that declare needs wait on what they named, so they hold no one back.
    queued_per_run = Counter(p.run_id for p in snapshot if p.state is PhaseState.QUEUED and not p.declares_needs)
    weights = {p.run_id: p.weight for p in snapshot}

    fresh: list[Phase] = []
    retries: list[Phase] = []
    skipped: list[Skipped] = []
    for phase in snapshot:
        reason = _skip_reason(phase, options, queued_per_run[phase.run_id])
        if reason is not None:
            skipped.append(Skipped(phase, reason))
        elif phase.state is PhaseState.QUEUED:
            fresh.append(phase)
        elif phase.state in (PhaseState.FAILED, PhaseState.SKIPPED):
            retries.append(phase)

    # Priority first; within one priority queued phases (runs interleaved, ``fairshare``)
    # before retries, and retries with fewer attempts first: spread retries instead of
    # hammering one phase.
    tiers = [(-p.priority, 0, index, Selected(p, "queued"))
             for index, p in enumerate(fair_order(fresh, lambda run: weights.get(run, 1)))]
    retries.sort(key=lambda p: (-p.priority, p.attempts - p.retry_base, p.created_seq, p.run_id, p.phase_id))
    tiers += [(-p.priority, 1, index, Selected(p, f"retry of {p.state.value.lower()} phase (attempt "
                                                  f"{p.attempts - p.retry_base + 1} of {options.max_attempts})"))
              for index, p in enumerate(retries)]
    ordered = [item for *_, item in sorted(tiers, key=lambda t: t[:3])]
    if options.batch_size is not None and len(ordered) > options.batch_size:
        over = ordered[options.batch_size:]
        ordered = ordered[: options.batch_size]
        skipped += [Skipped(s.phase, f"beyond --batch-size {options.batch_size}") for s in over]
    skipped.sort(key=lambda s: (s.phase.run_id, s.phase.created_seq, s.phase.phase_id))
    return Plan(tuple(ordered), tuple(skipped))


class Standing(Protocol):
    """What a skip reason is decided from: a ``Phase``, or a row read without its spec."""

    @property
    def run_id(self) -> str: ...
    @property
    def phase_id(self) -> str: ...
    @property
    def state(self) -> PhaseState: ...
    @property
    def attempts(self) -> int: ...
    @property
    def retry_base(self) -> int: ...
    @property
    def created_seq(self) -> int: ...
    @property
    def parked_reason(self) -> str | None: ...
    @property
    def lease_owner(self) -> str | None: ...
    @property
    def eligible_at(self) -> dt.datetime | None: ...
    @property
    def declares_needs(self) -> bool: ...
    @property
    def unmet_needs(self) -> tuple[Need, ...]: ...


@dataclass(frozen=True)
class SkippedStanding:
    standing: Standing
    reason: str


# Distinct skip reasons counted one by one; the rest are counted together, so that a
# backlog whose reasons all differ (one parked reason per phase) stays a short summary.
MAX_REASONS = 20
OTHER_REASONS = "(other reasons)"


@dataclass
class PlanTally:
    """``--dry-run`` over a backlog of any size: fed every phase once, in id order.

    It keeps counts and the first ``shown`` skipped phases, never the backlog, so a
    dry run over a million phases costs what one over a hundred does in memory.
    ``selected`` is the session's first page (``plan`` over the SQL candidates): an
    eligible phase not in it is "beyond --batch-size" when a batch size is set.
    """

    options: SelectionOptions
    queued_per_run: Mapping[str, int]
    selected: frozenset[tuple[str, str]]
    shown: int = 200
    eligible: int = 0
    complete: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[SkippedStanding] = field(default_factory=list)
    # Fed every phase that would run, with its own past duration, when given.
    forecast: Forecast | None = None

    def add(self, phase: Standing, past_seconds: float | None = None) -> None:
        if self.options.run_ids and phase.run_id not in self.options.run_ids:
            return
        reason = _skip_reason(phase, self.options, self.queued_per_run.get(phase.run_id, 0))
        if reason is None:
            self.eligible += 1
            if self.options.batch_size is None or (phase.run_id, phase.phase_id) in self.selected:
                if self.forecast is not None:
                    self.forecast.add(phase.run_id, past_seconds)
                return
            reason = f"beyond --batch-size {self.options.batch_size}"
        if reason == "complete":
            self.complete += 1
            return
        self.skipped += 1
        counted = reason if reason in self.reasons or len(self.reasons) < MAX_REASONS else OTHER_REASONS
        self.reasons[counted] += 1
        if len(self.examples) < self.shown:
            self.examples.append(SkippedStanding(phase, reason))

    @property
    def would_run(self) -> int:
        batch = self.options.batch_size
        return self.eligible if batch is None else min(self.eligible, batch)

    def shown_skipped(self) -> list[SkippedStanding]:
        """The first skipped phases, in the order ``plan`` lists its skips."""
        return sorted(self.examples, key=lambda s: (s.standing.run_id, s.standing.created_seq,
                                                    s.standing.phase_id))


def _state_reason(phase: Standing, options: SelectionOptions, _run_queued: int) -> str | None:
    if phase.state is PhaseState.COMPLETE:
        return "complete"
    if phase.state is PhaseState.EXECUTING:
        return f"executing (held by session {phase.lease_owner or 'unknown'})"
    if phase.state is PhaseState.SKIPPED and not options.include_parked:
        return f"parked: {phase.parked_reason or 'no reason recorded'} (batchdrain retry, or --include-parked)"
    return None


def _budget_reason(phase: Standing, options: SelectionOptions, _run_queued: int) -> str | None:
    used = phase.attempts - phase.retry_base
    return f"max attempts reached ({used} of {options.max_attempts})" if used >= options.max_attempts else None


def _needs_reason(phase: Standing, options: SelectionOptions, _run_queued: int) -> str | None:
    return needs_reason(phase.unmet_needs, max_attempts=options.max_attempts, include_parked=options.include_parked)


def _run_queued_reason(phase: Standing, options: SelectionOptions, run_queued: int) -> str | None:
    # A phase that declares its needs is not held back by the heuristic for them.
    if (phase.state is not PhaseState.QUEUED and options.skip_runs_with_queued and run_queued
            and not phase.declares_needs):
        return (f"run still has {run_queued} queued phase(s); failed phases wait "
                "(--no-skip-runs-with-queued to override)")
    return None


def _backoff_reason(phase: Standing, options: SelectionOptions, _run_queued: int) -> str | None:
    if (phase.state is PhaseState.QUEUED or options.now is None or phase.eligible_at is None
            or phase.eligible_at <= options.now):
        return None
    used = phase.attempts - phase.retry_base
    return (f"retry after {phase.eligible_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z "
            f"(backoff after {used} failed attempt(s))")


# The first that applies is the reason a phase waits: this order is the one ``--dry-run`` shows.
_SKIP_CHECKS = (_state_reason, _budget_reason, _needs_reason, _run_queued_reason, _backoff_reason)


def _skip_reason(phase: Standing, options: SelectionOptions, run_queued: int) -> str | None:
    for check in _SKIP_CHECKS:
        reason = check(phase, options, run_queued)
        if reason is not None:
            return reason
    return None
