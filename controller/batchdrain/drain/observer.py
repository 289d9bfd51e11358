"""What a front end (the CLI's progress bar) hears of a session: plan, starts, ends."""

from __future__ import annotations

from typing import Protocol

from batchdrain.domain import AttemptResult, Phase
from batchdrain.selection import Plan


class DrainObserver(Protocol):
    """What a front end (the CLI's progress bar) hears about; default does nothing."""

    def planned(self, plan: Plan) -> None: ...

    def attempt_started(self, phase: Phase, attempt: int) -> None: ...

    def attempt_finished(self, phase: Phase, attempt: int, result: AttemptResult) -> None: ...


class SilentObserver:
    def planned(self, plan: Plan) -> None:
        return None

    def attempt_started(self, phase: Phase, attempt: int) -> None:
        return None

    def attempt_finished(self, phase: Phase, attempt: int, result: AttemptResult) -> None:
        return None
