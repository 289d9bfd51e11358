"""How long draining the selected backlog takes at a parallelism, from past attempts. Pure.

Each phase that would run is given a duration from what the database remembers, in this
order: the mean of its own succeeded attempts (it ran before), else the median of its
run's succeeded attempts, else the median over every run; a phase with none of these
has no estimate and is counted apart. With P workers taking phases as they come free,
draining takes at least ``sum / P`` and at least the longest phase, and list scheduling
never takes more than ``sum / P + longest``: the estimate is ``max(sum / P, longest)``.
It holds counts and three floats, whatever the backlog's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Basis(StrEnum):
    PHASE = "by their own past attempts"
    RUN = "by their run's median"
    OVERALL = "by the overall median"
    NONE = "with no history (not counted)"


@dataclass(frozen=True)
class DurationHistory:
    """The medians a phase without its own history is estimated from (seconds)."""

    run_medians: Mapping[str, float] = field(default_factory=dict)
    overall_median: float | None = None

    def estimate(self, run_id: str, own_seconds: float | None) -> tuple[float | None, Basis]:
        if own_seconds is not None:
            return own_seconds, Basis.PHASE
        if run_id in self.run_medians:
            return self.run_medians[run_id], Basis.RUN
        if self.overall_median is not None:
            return self.overall_median, Basis.OVERALL
        return None, Basis.NONE


def human(seconds: float) -> str:
    """``2h 05m``, ``4m 10s``, ``12.5s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


@dataclass
class Forecast:
    parallelism: int
    history: DurationHistory
    phases: int = 0
    total_seconds: float = 0.0
    longest_seconds: float = 0.0
    by_basis: Counter[Basis] = field(default_factory=Counter)

    def add(self, run_id: str, own_seconds: float | None) -> None:
        """One phase that would run, with the mean of its own succeeded attempts if it has any."""
        seconds, basis = self.history.estimate(run_id, own_seconds)
        self.phases += 1
        self.by_basis[basis] += 1
        if seconds is not None:
            self.total_seconds += seconds
            self.longest_seconds = max(self.longest_seconds, seconds)

    @property
    def seconds(self) -> float | None:
        """The estimated wall time; None when no phase has an estimate."""
        if self.phases == self.by_basis[Basis.NONE]:
            return None
        return max(self.total_seconds / max(1, self.parallelism), self.longest_seconds)

    def line(self) -> str:
        if not self.phases:
            return "forecast: nothing to drain"
        bases = ", ".join(f"{self.by_basis[b]:,} {b.value}" for b in Basis if self.by_basis[b])
        if self.seconds is None:
            return f"forecast: no past attempts to estimate {self.phases:,} phase(s) from"
        return (f"forecast: ~{human(self.seconds)} to drain {self.phases:,} phase(s) at parallelism "
                f"{self.parallelism} (work {human(self.total_seconds)}, longest {human(self.longest_seconds)}); "
                f"estimated {bases}")
