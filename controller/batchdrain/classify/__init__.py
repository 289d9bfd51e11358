"""Turning what happened into a failure class and a one-line message: pure functions.

The seed tool's worst failure mode was "Unknown error": a phase failed and nobody could
say why. Everything here returns a class from ``FailureClass`` and a message that
names it, plus the first meaningful error line of the log when there is one.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence

from batchdrain.domain import TRANSIENT_CLASSES, AttemptHistoryItem, FailureClass

_ERROR_WORDS = re.compile(
    r"(\berror\b|\bexception\b|\bfatal\b|\bpanic\b|\bfailed\b|\bfailure\b|\btraceback\b"
    r"|\bkilled\b|\bdenied\b|\bnot found\b|\bcannot\b|\bcan't\b)",
    re.IGNORECASE,
)
# "ValueError: bad", "json.decoder.JSONDecodeError: ...", "KeyError('x')"
_PY_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning))\b[:(]?")
_NOISE = re.compile(r"^\[batchdrain\]")
MAX_MESSAGE = 300


def first_error_line(text: str) -> str | None:
    """The line a person would quote when asked "why did it fail?".

    A Python traceback's final exception line wins (the first lines of a traceback
    are only locations); otherwise the first line that reads like an error.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not _NOISE.match(ln)]
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and _PY_EXCEPTION.match(line):
            return _clip(line)
    for line in lines:
        if _PY_EXCEPTION.match(line) or _ERROR_WORDS.search(line):
            return _clip(line)
    return None


def _clip(line: str) -> str:
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def with_error_line(message: str, error_line: str | None) -> str:
    """``message: error_line``, unless the message already says that line.

    A rule's message often quotes the container's termination message, which is the
    log's tail (``FallbackToLogsOnError``): for a traceback, the very exception line
    ``first_error_line`` picks. The line is then said once. A clipped line ("…") counts
    as said when its unclipped part is in the message.
    """
    if not error_line or error_line.removesuffix("…") in message:
        return message
    return f"{message}: {error_line}"


_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"0x[0-9a-f]+", re.I), "<hex>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\s+"), " "),
]


def normalise_error_line(line: str | None) -> str:
    """Strip what differs between two occurrences of the same error (ids, numbers, paths)."""
    if not line:
        return ""
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    return line.strip()


def park_reason(history: Sequence[AttemptHistoryItem], *, park_after: int) -> str | None:
    """Smart retry: park when the last ``park_after`` attempts failed the same non-transient way.

    ``history`` is newest first. Transient classes (evictions, interrupted controllers)
    say nothing about the phase itself, so they never lead to parking.
    """
    recent = list(history[:park_after])
    if len(recent) < park_after:
        return None
    first = recent[0]
    if first.failure_class is FailureClass.SUCCEEDED or first.failure_class in TRANSIENT_CLASSES:
        return None
    signature = (first.failure_class, first.exit_code, normalise_error_line(first.first_error_line))
    for item in recent[1:]:
        if (item.failure_class, item.exit_code, normalise_error_line(item.first_error_line)) != signature:
            return None
    detail = first.first_error_line or "no error line in the log"
    code = f" (exit code {first.exit_code})" if first.exit_code is not None else ""
    return f"last {park_after} attempts failed the same way: {first.failure_class.value}{code}: {detail}"


def describe_signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify_process_exit(
    returncode: int | None,
    *,
    timed_out: bool,
    timeout_seconds: float | None,
    interrupted: bool,
    launch_error: str | None,
    error_line: str | None,
) -> tuple[FailureClass, str, int | None, str | None]:
    """(class, message, exit code, reason exit code is null) for a local subprocess."""
    suffix = f": {error_line}" if error_line else ""
    signalled = ""
    if returncode is not None and returncode < 0:
        # Shell convention: killed by signal N reads as exit code 128+N.
        signalled = f" by {describe_signal(-returncode)}"
        returncode = 128 - returncode
    if launch_error is not None:
        return (FailureClass.LAUNCH_ERROR, f"process never started: {launch_error}", None,
                "the process never started")
    if interrupted:
        return (FailureClass.CONTROLLER_INTERRUPTED,
                "controller stopped (SIGTERM) before the phase finished; grace period ended"
                + suffix, returncode, None if returncode is not None else "controller interrupted")
    if timed_out:
        return (FailureClass.DEADLINE_EXCEEDED,
                f"timed out after {timeout_seconds:g}s and was killed{signalled}{suffix}", returncode, None)
    if returncode is None:
        return (FailureClass.API_ERROR, "process state unavailable after it ended", None,
                "the operating system reported no exit status")
    if returncode == 0:
        return FailureClass.SUCCEEDED, "exit code 0", 0, None
    # Killed by a signal is still exit_code, not oom_killed: locally we cannot tell the
    # OOM killer from `kill -9`.
    how = f"killed{signalled} (exit code {returncode})" if signalled else f"exit code {returncode}"
    return FailureClass.EXIT_CODE, how + suffix, returncode, None
