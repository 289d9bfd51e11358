"""Where each log and report lives in a store: keys that no two attempts share."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

_MAX_PLAIN_NAME = 96
_HASHED_PREFIX = 31
# Never produced by the percent-encoding below, so a hashed name can equal no plain one.
_HASH_MARK = "+"
# Log keys put runs under this folder, so no run id can meet a session's report files.
_RUNS_DIR = "runs"
# The end of the identity header (``identity.identity_header``): phase bytes follow it.


def safe_name(value: str) -> str:
    """A file-name-safe rendering of a free-text id, injective for any ids.

    Percent-encoding (everything but ``A-Z a-z 0-9 - _ . ~``, a leading dot too) is
    reversible, so distinct ids give distinct names; past ``_MAX_PLAIN_NAME`` characters
    the name is a prefix, ``+`` (which the encoding never leaves bare) and the full
    sha256 of the id, short enough for any file system or object store.
    """
    quoted = quote(value, safe="-_.~")
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) <= _MAX_PLAIN_NAME:
        return quoted
    prefix = quoted[:_HASHED_PREFIX]
    cut = prefix.rfind("%", len(prefix) - 2)
    if cut >= 0:  # never end the prefix inside an escape
        prefix = prefix[:cut]
    return f"{prefix}{_HASH_MARK}{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


def log_key(session_id: str, run_id: str, phase_id: str, attempt: int, stream: str) -> str:
    """``<session>/runs/<run>/<phase>.attempt-<n>[.<stream>].log``: one key per attempt log.

    Injective: each id is a ``safe_name`` (no ``/``) in a path part of its own, and the
    suffix is read from the right, so no two (run, phase, attempt, stream) share a key.
    """
    suffix = "log" if stream == "combined" else f"{stream}.log"
    return f"{safe_name(session_id)}/{_RUNS_DIR}/{safe_name(run_id)}/{safe_name(phase_id)}.attempt-{attempt}.{suffix}"


def _legacy_safe_name(value: str) -> str:
    quoted = quote(value, safe="-_.~ ").replace(" ", "_")
    quoted = re.sub(r"^\.+", "_", quoted)
    if quoted == value and len(value) <= 80:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{quoted[:80]}-{digest}"


def legacy_log_key(session_id: str, run_id: str, phase_id: str, attempt: int, stream: str) -> str:
    """The key earlier versions used (``<run>__<phase>``, not injective): still read on adoption."""
    suffix = "log" if stream == "combined" else f"{stream}.log"
    return (f"{_legacy_safe_name(session_id)}/{_legacy_safe_name(run_id)}__{_legacy_safe_name(phase_id)}"
            f".attempt-{attempt}.{suffix}")
