"""Which open attempts of other sessions a session adopts now, and which wait (pure)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from batchdrain.db import AttemptRecord, OrphanRecord
from batchdrain.domain import Phase, PhaseSpec, PhaseState
from batchdrain.drain.adoption import decide, holder_gone, process_gone, process_start

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def orphan(session: str, *, heartbeat_ago: float, controller: dict[str, Any]) -> OrphanRecord:
    attempt = AttemptRecord(attempt_pk=1, session_id=session, run_id="r", phase_id=f"p-{session}", attempt=1,
                            status="running", executor="kubernetes", command=("true",), created_at=NOW,
                            identity={})
    phase = Phase(run_id="r", phase_id=f"p-{session}", state=PhaseState.EXECUTING, attempts=1,
                  spec=PhaseSpec(command=("true",)))
    return OrphanRecord(attempt=attempt, phase=phase, session_heartbeat_at=NOW - dt.timedelta(seconds=heartbeat_ago),
                        session_identity={"controller": controller},
                        lease_expires_at=NOW + dt.timedelta(seconds=100))


def test_expired_leases_are_adopted_live_holders_wait_dead_holders_are_adopted_at_once() -> None:
    expired = orphan("old", heartbeat_ago=500, controller={"host": "h", "pid": 1})
    live = orphan("live", heartbeat_ago=5, controller={"host": "other", "pid": 7})
    dead = orphan("dead", heartbeat_ago=5, controller={"host": "h", "pid": 9})
    asked: list[dict[str, Any]] = []

    def gone(controller: dict[str, Any]) -> str | None:
        asked.append(controller)
        return "its process 9 on h is gone" if controller["pid"] == 9 else None

    decided = decide([expired, live, dead], now=NOW, lease_seconds=120, gone=gone)
    assert [(a.orphan.attempt.session_id, a.holder_gone) for a in decided.adopt] == [("old", None), ("dead", "dead")]
    (waiting,) = decided.waiting
    assert waiting.line() == ("r/p-live waits for session live (host other pid 7, heart-beating) until its lease "
                              "ends at 2026-12-01T12:01:40+00:00")
    assert [c["pid"] for c in asked] == [7, 9]  # an expired lease needs no proof


def test_holder_gone_by_process_on_this_host_or_by_pod() -> None:
    def never(_ns: str, _name: str) -> bool | None:
        raise AssertionError("no pod to look up")

    assert holder_gone({"host": "h", "pid": 5}, host="h", process_is_gone=lambda p, s: True,
                       pod_gone=never) == "its process 5 on h is gone"
    assert holder_gone({"host": "h", "pid": 5}, host="h", process_is_gone=lambda p, s: False, pod_gone=never) is None
    # another host's process cannot be looked at: only its lease tells
    assert holder_gone({"host": "x", "pid": 5}, host="h", process_is_gone=lambda p, s: True, pod_gone=never) is None
    pod = {"host": "pod-1", "pid": 1, "pod": {"name": "pod-1", "namespace": "batch"}}
    assert holder_gone(pod, host="h", process_is_gone=lambda p, s: True,
                       pod_gone=lambda ns, n: True) == "its pod batch/pod-1 no longer exists"
    assert holder_gone(pod, host="h", process_is_gone=lambda p, s: True, pod_gone=lambda ns, n: None) is None


def test_a_reused_pid_is_not_the_holder() -> None:
    me = os.getpid()
    start = process_start(me)
    assert start is not None
    assert not process_gone(me, start)
    assert process_gone(me, start + 1)  # same pid, another start: the holder is gone
    assert process_gone(2**22 + 12345, None)
