"""The controller's own operating-system resources: file descriptors and processes.

Two checks, both about the controller, never about a phase:

- ``capacity_problem`` (at the start of a drain): ``--parallelism`` attempts at once must
  fit the open-file limit (RLIMIT_NOFILE) and the process limit (RLIMIT_NPROC, which
  counts threads), from what this process holds now, a reserve for the session itself
  and an estimate per attempt (``PER_ATTEMPT``, README "Bad input"):

  - local: 8 descriptors (its two log files, the read ends of two pipes, and while it is
    spawned the child's ends and ``subprocess``'s error pipe) and 4 tasks (the worker,
    two pump threads, the child process);
  - kubernetes: 6 descriptors (a connection per log follow in split mode, two log files,
    one spare for its API calls) and 3 threads (the worker, a follower per stream).

  The process limit applies to every task of the user, of which only this process's are
  counted; and the kernel does not apply it to root, so it is not checked for root.
- ``exhausted`` (during a session): an ``EMFILE``, ``ENFILE``, ``EAGAIN`` or ``ENOMEM``
  on a spawn or an open, or a thread that cannot start, is the controller running out,
  not the phase failing: the attempt is not charged, never recorded as ``launch_error``,
  and the session halts with that line.
"""

from __future__ import annotations

import errno
import os
import resource
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class AttemptCost:
    fds: int
    tasks: int


PER_ATTEMPT = {"local": AttemptCost(fds=8, tasks=4), "kubernetes": AttemptCost(fds=6, tasks=3)}
# The session's own: database pool, watches, heartbeat, metrics server, report writing.
RESERVE = AttemptCost(fds=64, tasks=16)


@dataclass(frozen=True)
class Limits:
    """Soft limits (``None`` when unlimited) and what this process uses now."""

    nofile: int | None
    nproc: int | None
    open_fds: int
    threads: int
    root: bool


def current_limits() -> Limits:
    def soft(which: int) -> int | None:
        value = resource.getrlimit(which)[0]
        return None if value == resource.RLIM_INFINITY else value

    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 3
    return Limits(nofile=soft(resource.RLIMIT_NOFILE), nproc=soft(resource.RLIMIT_NPROC), open_fds=open_fds,
                  threads=threading.active_count(), root=os.geteuid() == 0)


def capacity_problem(parallelism: int, *, executor: str, limits: Limits) -> str | None:
    """Why ``parallelism`` attempts cannot run within these limits, or None."""
    cost = PER_ATTEMPT.get(executor, PER_ATTEMPT["local"])
    fds = limits.open_fds + RESERVE.fds + parallelism * cost.fds
    if limits.nofile is not None and fds > limits.nofile:
        most = max((limits.nofile - limits.open_fds - RESERVE.fds) // cost.fds, 0)
        return (f"--parallelism {parallelism} needs about {fds} open files ({cost.fds} per {executor} attempt), "
                f"over the open-file limit RLIMIT_NOFILE {limits.nofile}: raise it (ulimit -n {fds}) "
                f"or use --parallelism {most} or less")
    tasks = limits.threads + RESERVE.tasks + parallelism * cost.tasks
    if limits.nproc is not None and not limits.root and tasks > limits.nproc:
        most = max((limits.nproc - limits.threads - RESERVE.tasks) // cost.tasks, 0)
        return (f"--parallelism {parallelism} needs about {tasks} processes and threads ({cost.tasks} per "
                f"{executor} attempt), over the process limit RLIMIT_NPROC {limits.nproc}: raise it "
                f"(ulimit -u {tasks}) or use --parallelism {most} or less")
    return None


_RUN_OUT = {
    errno.EMFILE: "out of file descriptors (RLIMIT_NOFILE: raise ulimit -n or lower --parallelism)",
    errno.ENFILE: "out of file descriptors system-wide (fs.file-max)",
    errno.EAGAIN: "out of processes or threads (RLIMIT_NPROC: raise ulimit -u or lower --parallelism)",
    errno.ENOMEM: "out of memory",
}


def exhausted(err: BaseException) -> str | None:
    """The line saying what the controller ran out of, when ``err`` means that; else None."""
    if isinstance(err, OSError) and err.errno in _RUN_OUT:
        return f"the controller ran {_RUN_OUT[err.errno]}: {err.strerror}"
    if isinstance(err, RuntimeError) and "can't start new thread" in str(err):
        return f"the controller ran {_RUN_OUT[errno.EAGAIN]}: can't start new thread"
    return None
