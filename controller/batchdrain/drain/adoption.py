"""Attempts other sessions left open: which this session adopts now, and which wait.

An open attempt is adopted when its session's lease expired, or at once when its
holder is provably gone: the controller ran on this host and its process no longer
exists (same pid *and* start time, so a reused pid is not mistaken for it), or it ran
in a pod of this namespace that no longer exists. Otherwise its phase waits for that
session, and the session says which phases wait for whom and until when, instead of
ending silently with nothing done. ``decide`` is pure; the facts come from outside.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchdrain.db import OrphanRecord

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# (namespace, pod name) -> True gone, False still there, None cannot tell
PodGone = Callable[[str, str], "bool | None"]


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def controller_identity(version: str) -> dict[str, Any]:
    """Who this controller is, as a later session will need it to tell whether it died."""
    pid = os.getpid()
    identity: dict[str, Any] = {"host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid),
                                "version": version}
    if os.environ.get("KUBERNETES_SERVICE_HOST") and _SERVICE_ACCOUNT_NAMESPACE.is_file():
        identity["pod"] = {"name": socket.gethostname(),
                           "namespace": _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()}
    return identity


def process_gone(pid: int, start: int | None) -> bool:
    """No process with this pid, or another one started since (the pid was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process: it exists
    return start is not None and process_start(pid) not in (None, start)


def holder_gone(controller: Mapping[str, Any], *, host: str, process_is_gone: Callable[[int, int | None], bool],
                pod_gone: PodGone) -> str | None:
    """Why the controller that holds an attempt is provably gone, or None when it may live."""
    pod = controller.get("pod")
    if isinstance(pod, Mapping) and pod.get("name") and pod.get("namespace"):
        if pod_gone(str(pod["namespace"]), str(pod["name"])):
            return f"its pod {pod['namespace']}/{pod['name']} no longer exists"
        return None
    pid = controller.get("pid")
    if controller.get("host") == host and isinstance(pid, int) and process_is_gone(pid, controller.get("pid_start")):
        return f"its process {pid} on {host} is gone"
    return None


@dataclass(frozen=True)
class Adoption:
    orphan: OrphanRecord
    # Set when the lease has not expired but its holder is provably gone: the session id
    # ``take_over`` may take the lease from, and why.
    holder_gone: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Waiting:
    run_id: str
    phase_id: str
    session_id: str
    holder: str
    until: dt.datetime

    def line(self) -> str:
        return (f"{self.run_id}/{self.phase_id} waits for session {self.session_id} ({self.holder}, "
                f"heart-beating) until its lease ends at {self.until.isoformat(timespec='seconds')}")


@dataclass(frozen=True)
class Decisions:
    adopt: list[Adoption] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


def decide(open_attempts: list[OrphanRecord], *, now: dt.datetime, lease_seconds: float,
           gone: Callable[[Mapping[str, Any]], str | None]) -> Decisions:
    """Adopt what a dead session left (lease expired or holder gone); say what must wait."""
    cutoff = now - dt.timedelta(seconds=lease_seconds)
    decisions = Decisions()
    verdicts: dict[str, str | None] = {}
    for orphan in open_attempts:
        session = orphan.attempt.session_id
        if orphan.session_heartbeat_at < cutoff:
            decisions.adopt.append(Adoption(orphan))
            continue
        controller = orphan.session_identity.get("controller") or {}
        if session not in verdicts:
            verdicts[session] = gone(controller)
        why = verdicts[session]
        if why is not None:
            decisions.adopt.append(Adoption(orphan, holder_gone=session, why=why))
            continue
        holder = f"host {controller.get('host')} pid {controller.get('pid')}"
        until = orphan.lease_expires_at or orphan.session_heartbeat_at + dt.timedelta(seconds=lease_seconds)
        decisions.waiting.append(Waiting(orphan.attempt.run_id, orphan.attempt.phase_id, session, holder, until))
    return decisions
