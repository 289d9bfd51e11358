"""What one attempt runs with: its phase's spec, rendered, under an identity.

The one way a launch is built, for a fresh attempt and for an adopted one (with the
``session_id`` of the dead session that started it), so that an adopted attempt is
supervised with the phase's own timeout, memory limit and environment.
"""

from __future__ import annotations

from batchdrain.domain import Phase
from batchdrain.executors.base import AttemptLaunch
from batchdrain.identity import Identity
from batchdrain.settings import Settings


def launch_for(phase: Phase, attempt: int, *, session_id: str, settings: Settings) -> AttemptLaunch:
    spec = phase.spec
    identity = Identity(
        session_id=session_id, run_id=phase.run_id, phase_id=phase.phase_id, attempt=attempt,
        database_url=settings.phase_database_url or settings.database_url, api_url=settings.api_url,
    )
    values = {"run_id": phase.run_id, "phase_id": phase.phase_id, "attempt": str(attempt),
              "session_id": session_id}
    env = {**dict(spec.env), **identity.env(settings)}
    return AttemptLaunch(
        identity=identity, spec=spec, command=tuple(spec.render_command(values)),
        env=tuple(sorted(env.items())),
        timeout_seconds=spec.timeout_seconds or settings.default_timeout_seconds,
        image=spec.image or settings.default_image,
    )
