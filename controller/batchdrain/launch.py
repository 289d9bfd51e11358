"""What one attempt runs: the launch an executor receives and a Job spec is built from.

One value for every layer that needs it (the drain loop builds it, executors run it,
``jobspec`` renders it into a Job), so no layer copies it into a look-alike of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchdrain.domain import PhaseSpec
from batchdrain.identity import Identity


@dataclass(frozen=True)
class AttemptLaunch:
    identity: Identity
    spec: PhaseSpec
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    timeout_seconds: float
    image: str
