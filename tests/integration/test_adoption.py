"""Adopting a dead session's attempt: it is supervised with its phase's own spec.

The adopted attempt's launch must be the one a fresh attempt of the phase would get
(same timeout, memory limit, environment), only under the dead session's identity:
the deadline and the OOM classification of the adopted attempt depend on it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import update

from batchdrain.db import Database, NewPhase
from batchdrain.db.models import SessionRow
from batchdrain.domain import AttemptResult, FailureClass, PhaseSpec, PhaseState, utcnow
from batchdrain.drain import DrainSession
from batchdrain.executors.base import AttemptLaunch, AttemptUpdate, OrphanAttempt, StopSignal
from batchdrain.logstore import LogSink, open_log_sink
from batchdrain.settings import Settings


class RecordingExecutor:
    """Runs nothing; keeps what it was asked to adopt."""

    name = "recording"

    def __init__(self) -> None:
        self.adopted: list[OrphanAttempt] = []

    def begin(self, *, session_id: str, sink: LogSink) -> None:
        return None

    def execute(self, launch: AttemptLaunch, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        raise AssertionError(f"nothing should be launched, got {launch}")

    def adopt(self, orphan: OrphanAttempt, *, stop: StopSignal, on_update: AttemptUpdate) -> AttemptResult:
        self.adopted.append(orphan)
        return AttemptResult(failure_class=FailureClass.SUCCEEDED, message="exit code 0", exit_code=0,
                             finished_at=utcnow())

    def end(self) -> list[str]:
        return []

    def unavailable(self) -> str | None:
        return None

    def left_for_adoption(self) -> list[str]:
        return []

    def holder_pod_gone(self, namespace: str, name: str) -> bool | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {}


def test_an_adopted_attempt_keeps_its_phases_timeout_memory_and_env(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    try:
        db.upgrade()
        spec = PhaseSpec.from_json({"command": ["sh", "-c", "echo {session_id} {attempt}"], "timeout_seconds": 7200,
                                    "memory": "64Mi", "env": {"PHASE_VAR": "from-the-phase"}})
        db.enqueue([NewPhase("r", "p", spec)])
        # A session that claimed the phase and died: its lease and its heartbeat are long past.
        dead = db.create_session(executor="recording", settings={}, identity={})
        (phase,) = db.phases()
        claim = db.claim(phase, session_id=dead, lease_seconds=0.001, executor="recording",
                         command=["sh", "-c", f"echo {dead} 1"], image=None, identity={"session_id": dead})
        assert claim is not None
        with db.engine.begin() as conn:
            conn.execute(update(SessionRow).where(SessionRow.session_id == dead)
                         .values(heartbeat_at=utcnow() - dt.timedelta(hours=1)))

        settings = Settings(database_url=database_url, log_store=str(tmp_path / "logs"), lease_seconds=60)
        assert settings.default_timeout_seconds == 3600  # below the phase's own timeout
        executor = RecordingExecutor()
        outcome = DrainSession(db=db, sink=open_log_sink(settings.log_store), executor=executor,
                               settings=settings).run()

        (orphan,) = executor.adopted
        launch = orphan.launch
        assert launch.timeout_seconds == 7200
        assert launch.spec.memory == "64Mi"
        assert ("PHASE_VAR", "from-the-phase") in launch.env
        assert launch.identity.session_id == dead != outcome.session_id
        assert launch.identity.attempt == claim.attempt == 1
        assert launch.command == ("sh", "-c", f"echo {dead} 1")  # as the dead session launched it
        assert dict(launch.env)["BATCHDRAIN_SESSION_ID"] == dead
        assert orphan.session_id == dead and orphan.attempt_pk == claim.attempt_pk
        assert db.phases()[0].state is PhaseState.COMPLETE
    finally:
        db.dispose()
