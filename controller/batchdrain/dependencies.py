"""Declared dependencies (``needs``): the checks an import makes, and why a dependent waits. Pure.

A phase may list ``needs: [phase_id, ...]`` of its own run; it is eligible only when all
of them are COMPLETE. An import refuses a need that names no phase of the run and a
cycle (a phase that needs itself, directly or not), each with one line naming them:
such a phase could never run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from batchdrain.domain import Need, PhaseState

# Ids shown in one error line before "..."; a line, not a dump.
SHOWN = 5


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle among ``needs`` (phase -> the phases it needs) as ``[a, b, ..., a]``, or None.

    Iterative depth-first search (a file may chain a million phases): white, grey
    (on the current path), black (done).
    """
    done: set[str] = set()
    for root in sorted(needs):
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(sorted(needs.get(root, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt):], nxt]
            if nxt in done or nxt not in needs:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(sorted(needs[nxt])))
    return None


def cycle_line(run_id: str, cycle: Sequence[str]) -> str:
    shown = [repr(p) for p in cycle[: SHOWN + 1]] + (["..."] if len(cycle) > SHOWN + 1 else [])
    return f"run {run_id!r}: dependency cycle {' -> '.join(shown)} (needs must not loop)"


def unknown_line(missing: Iterable[tuple[str, str, str]], count: int) -> str:
    """``missing``: (run, phase, need) triples, the first few of ``count``."""
    listed = [f"phase {p!r} of run {r!r} needs {n!r}" for r, p, n in missing]
    more = f" (and {count - len(listed)} more)" if count > len(listed) else ""
    return f"unknown need(s), no such phase in the run: {'; '.join(listed)}{more}"


def needs_reason(unmet: Sequence[Need], *, max_attempts: int, include_parked: bool) -> str | None:
    """Why a phase with unmet needs waits; "blocked" when a need cannot complete as things stand."""
    if not unmet:
        return None
    for need in unmet:
        if need.state is PhaseState.SKIPPED and not include_parked:
            return (f"blocked: needs {need.phase_id!r}, parked: {need.parked_reason or 'no reason recorded'} "
                    "(batchdrain retry, or --include-parked)")
        if need.state is PhaseState.FAILED and need.attempts_used >= max_attempts:
            return (f"blocked: needs {need.phase_id!r}, failed for good ({need.attempts_used} of "
                    f"{max_attempts} attempts; batchdrain retry --include-failed)")
    listed = ", ".join(f"{n.phase_id!r} ({n.state.value.lower()})" for n in unmet[:SHOWN])
    more = f" and {len(unmet) - SHOWN} more" if len(unmet) > SHOWN else ""
    return f"waiting for needs {listed}{more}"
