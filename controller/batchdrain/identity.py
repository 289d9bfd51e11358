"""The environment identity every phase runs with, and the header that opens its logs.

The original subprocess tool lost days to phases talking to a different database than
the controller; so the identity is computed once here, injected verbatim, printed at
the top of every log (password masked) and stored on the attempt.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from batchdrain.settings import Settings

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")


# Every attempt's identity header and attempt row mask the same one or two URLs, and
# parsing them again each time was a visible share of the controller's CPU per phase.
@functools.lru_cache(maxsize=64)
def mask_url(url: str | None) -> str | None:
    """Hide the password of a URL, keeping everything else readable."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def mask_secrets(text: str, secrets: list[str]) -> str:
    """Remove known secret values and any URL password from free text (error messages)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


@dataclass(frozen=True)
class Identity:
    """Ids and endpoints of one attempt. ``database_url`` is the real (unmasked) value."""

    session_id: str
    run_id: str
    phase_id: str
    attempt: int
    database_url: str
    api_url: str | None

    def env(self, settings: Settings, *, include_database_url: bool = True) -> dict[str, str]:
        names = settings.identity_names()
        env = {
            names["run_id"]: self.run_id,
            names["phase_id"]: self.phase_id,
            names["session_id"]: self.session_id,
            names["attempt"]: str(self.attempt),
            "PYTHONUTF8": "1",
            "PYTHONIOENCODING": "utf-8",
        }
        if include_database_url:
            env[names["database_url"]] = self.database_url
        if self.api_url:
            env[names["api_url"]] = self.api_url
        return env

    def masked(self) -> dict[str, str | int | None]:
        return {
            "session_id": self.session_id,
            "run_id": self.run_id,
            "phase_id": self.phase_id,
            "attempt": self.attempt,
            "database_url": mask_url(self.database_url),
            "api_url": self.api_url,
        }


def header_value(value: object) -> str:
    """A value as the identity header shows it: one line, whatever the value holds.

    Ids written into the database by other applications may hold a newline that would
    otherwise forge a header line of its own; control characters (and the backslash
    that escapes them) are written as Python-style escapes, everything else as is.
    """
    text = "(none)" if value is None else str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def identity_header(identity: Identity, extra: dict[str, str | None]) -> str:
    """Lines written by the controller before any byte of the phase's own output."""
    rows: list[tuple[str, str | int | None]] = [
        ("session", identity.session_id),
        ("run", identity.run_id),
        ("phase", identity.phase_id),
        ("attempt", identity.attempt),
        *extra.items(),
        ("DATABASE_URL", mask_url(identity.database_url)),
        ("API_URL", identity.api_url or "(none)"),
    ]
    lines = ["[batchdrain] ===== ENVIRONMENT IDENTITY ====="]
    lines += [f"[batchdrain] {name}: {header_value(value)}" for name, value in rows]
    lines.append("[batchdrain] ================================")
    return "\n".join(lines) + "\n"
