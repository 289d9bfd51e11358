"""Which phases a drain session runs, and why every other phase waits: pure functions.

Safety first (SPEC section 2): queued work goes before retries, and a FAILED phase is
not retried while its run still has QUEUED phases, because in practice those queued
phases are often what the failed one depends on. The plan is a function of the
backlog snapshot and the options only, so ``--dry-run`` shows exactly what a real
session would do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from batchdrain.domain import BadInput, Phase, PhaseState


@dataclass(frozen=True)
class SelectionOptions:
    run_ids: tuple[str, ...] = ()
    batch_size: int | None = None
    max_attempts: int = 3
    skip_runs_with_queued: bool = True
    include_parked: bool = False


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
    queued_per_run = Counter(p.run_id for p in snapshot if p.state is PhaseState.QUEUED)

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

    fresh.sort(key=lambda p: (p.created_seq, p.run_id, p.phase_id))
    # Phases with fewer attempts first: spread retries instead of hammering one phase.
    retries.sort(key=lambda p: (p.attempts - p.retry_base, p.created_seq, p.run_id, p.phase_id))
    ordered = [Selected(p, "queued") for p in fresh] + [
        Selected(p, f"retry of {p.state.value.lower()} phase (attempt "
                    f"{p.attempts - p.retry_base + 1} of {options.max_attempts})")
        for p in retries
    ]
    if options.batch_size is not None and len(ordered) > options.batch_size:
        over = ordered[options.batch_size:]
        ordered = ordered[: options.batch_size]
        skipped += [Skipped(s.phase, f"beyond --batch-size {options.batch_size}") for s in over]
    skipped.sort(key=lambda s: (s.phase.run_id, s.phase.created_seq, s.phase.phase_id))
    return Plan(tuple(ordered), tuple(skipped))


def _skip_reason(phase: Phase, options: SelectionOptions, run_queued: int) -> str | None:
    if phase.state is PhaseState.COMPLETE:
        return "complete"
    if phase.state is PhaseState.EXECUTING:
        return f"executing (held by session {phase.lease_owner or 'unknown'})"
    if phase.state is PhaseState.SKIPPED and not options.include_parked:
        return f"parked: {phase.parked_reason or 'no reason recorded'} (batchdrain retry, or --include-parked)"
    if phase.attempts - phase.retry_base >= options.max_attempts:
        used = phase.attempts - phase.retry_base
        return f"max attempts reached ({used} of {options.max_attempts})"
    if phase.state is not PhaseState.QUEUED and options.skip_runs_with_queued and run_queued:
        return (f"run still has {run_queued} queued phase(s); failed phases wait "
                "(--no-skip-runs-with-queued to override)")
    return None
