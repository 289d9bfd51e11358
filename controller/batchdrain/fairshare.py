"""The order of queued phases: priority first, then the runs of one priority interleaved. Pure.

Within one priority, runs take turns: a run's phases are ranked by insertion order
(rank 1, 2, ...) and a phase's *round* is ``(rank - 1) // weight``, so that in every round
each run contributes ``weight`` phases (1 by default). The order is
``(priority desc, round, run_id, created_seq)``: a 10-phase run queued behind a
50,000-phase run has its phases in the first ten rounds, not after the 50,000. It
depends only on the phases (and the runs' weights), so the same database state always
gives the same order.

Two facts make the order cheap to produce from a database without reading the
backlog (``db.fairness``), and both hold because a phase's key only grows along its
run's phases taken in ``(priority desc, created_seq)`` order:

- the first N phases of the order hold, for each run, a *prefix* of its phases in
  that order, so ranks computed among the phases read equal the ranks in the whole
  backlog, and a few phases per run suffice;
- when some runs were read only in part, every phase ordered before the first key a
  part-read run's last phase has is placed for certain (``settled_prefix``).

Both the database side and ``selection.plan`` use these functions, so the two cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar


class Queued(Protocol):
    """What the order is decided from: a ``Phase`` or a row read without its spec."""

    @property
    def run_id(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_seq(self) -> int: ...


Q = TypeVar("Q", bound=Queued)
FairKey = tuple[int, int, str, int]


def run_order(phases: Iterable[Q]) -> list[Q]:
    """A run's phases in the order the fair key grows along: priority desc, then insertion."""
    return sorted(phases, key=lambda p: (-p.priority, p.created_seq))


def keyed(phases: Iterable[Q], weight: Callable[[str], int]) -> list[tuple[FairKey, Q]]:
    """Each phase with its key ``(-priority, round, run_id, created_seq)``, in key order.

    Ranks are counted among ``phases`` (per run and priority), so ``phases`` must hold a
    prefix of each run in ``run_order`` (what the first N of the order always are).
    """
    ranks: dict[tuple[int, str], int] = {}
    out: list[tuple[FairKey, Q]] = []
    for phase in sorted(phases, key=lambda p: (p.run_id, -p.priority, p.created_seq)):
        group = (phase.priority, phase.run_id)
        rank = ranks[group] = ranks.get(group, 0) + 1
        out.append(((-phase.priority, (rank - 1) // max(1, weight(phase.run_id)), phase.run_id,
                     phase.created_seq), phase))
    out.sort(key=lambda item: item[0])
    return out


def fair_order(phases: Iterable[Q], weight: Callable[[str], int] | None = None) -> list[Q]:
    """Queued phases in the order a session runs them (see the module)."""
    return [phase for _, phase in keyed(phases, weight or (lambda _run: 1))]


def settled_prefix(per_run: Mapping[str, Sequence[Q]], part_read: Iterable[str], *,
                   weights: Mapping[str, int]) -> list[Q]:
    """The phases whose place in the whole order is certain, in that order.

    ``per_run`` holds, per run, a prefix of its phases in ``run_order``; ``part_read``
    names the runs with further phases not read. A phase not read sorts after the last
    one read of its run, so everything up to the smallest such last key is placed.
    """
    part_read = list(part_read)
    if any(not per_run.get(run) for run in part_read):
        return []  # a run of which nothing was read may hold the very first phase
    ordered = keyed((p for phases in per_run.values() for p in phases), lambda run: weights.get(run, 1))
    if not part_read:
        return [phase for _, phase in ordered]
    # Keys grow along a run: the last key seen of a run is that of its last phase read.
    last: dict[str, FairKey] = {}
    for key, phase in ordered:
        last[phase.run_id] = key
    bound = min(last[run] for run in part_read)
    return [phase for key, phase in ordered if key <= bound]
