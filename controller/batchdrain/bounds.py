"""The largest values the things we feed accept: every numeric setting and field is checked
against these at the door, so a value is refused with its name instead of overflowing later.

Each bound is the smallest limit of what the value reaches (README "Bad input" lists them):

- seconds (timeouts, leases, graces, retry bounds): 9,223,372,036 s (~292 years), the
  largest whole number of seconds an int64 count of nanoseconds holds. Kubernetes turns
  ``activeDeadlineSeconds`` into a Go ``time.Duration`` (int64 ns: a larger value wraps
  negative and the Job is past its deadline at once), and Python's waits
  (``threading.Event.wait``, ``time.sleep``) refuse more than ``threading.TIMEOUT_MAX``,
  which is the same int64 bound on Linux.
- counts stored in or compared with an ``INTEGER`` column (attempts, parking): int32,
  Postgres's ``integer``; counts that end in a ``LIMIT`` (batch size): int64.
- Kubernetes int32 fields (``ttlSecondsAfterFinished``): int32.
- ports: 1..65535.

No imports of the project: this module is the bottom of the layers.
"""

from __future__ import annotations

import math

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# int64 nanoseconds, in whole seconds (Go's time.Duration, Python's threading.TIMEOUT_MAX).
MAX_SECONDS = INT64_MAX // 10**9
MAX_PORT = 65535


def seconds_problem(value: object, *, positive: bool = True) -> str | None:
    """Why ``value`` is not a usable number of seconds, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number of seconds, got {value!r}"
    if (value <= 0) if positive else (value < 0):
        return f"must be {'positive' if positive else 'zero or more'}, got {value!r}"
    if value > MAX_SECONDS:
        return f"must be at most {MAX_SECONDS} seconds (int64 nanoseconds), got {value!r}"
    return None
