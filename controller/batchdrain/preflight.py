"""Checks run before a session selects anything (and by ``batchdrain doctor``).

A drain that discovers half-way that it may not delete Jobs, or that its database is
one migration behind, leaves a mess; so every permission and dependency a session
needs is checked up front, each failure is one line, and the results are kept in the
session's identity record.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from batchdrain.db import Database, DatabaseUnavailable
from batchdrain.kube import KubeApi, KubeError
from batchdrain.logstore import LogSink, probe_store
from batchdrain.settings import Settings

# (verb, resource, subresource): everything the Kubernetes executor calls.
REQUIRED_ACCESS: tuple[tuple[str, str, str | None], ...] = (
    ("create", "jobs", None),
    ("get", "jobs", None),
    ("list", "jobs", None),
    ("watch", "jobs", None),
    ("delete", "jobs", None),
    ("get", "pods", None),
    ("list", "pods", None),
    ("watch", "pods", None),
    ("patch", "pods", None),
    ("delete", "pods", None),
    ("get", "pods", "log"),
    ("list", "events", None),
    ("create", "events", None),
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class PreflightFailed(RuntimeError):
    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        failed = [c for c in checks if not c.ok]
        super().__init__("; ".join(f"{c.name}: {c.detail}" for c in failed))


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except (KubeError, DatabaseUnavailable, OSError, ValueError) as err:
        return Check(name, False, str(err).splitlines()[0] if str(err) else type(err).__name__)


def check_database(db: Database) -> list[Check]:
    def migrated() -> str:
        current, head = db.current_revision(), db.head_revision()
        if current != head:
            raise ValueError(f"at revision {current or 'empty'}, expected {head}: run `batchdrain db upgrade`")
        return f"{db.masked_url()} at revision {current}"

    return [_check("database", migrated)]


def check_log_store(sink: LogSink) -> list[Check]:
    """A probe written, read back and deleted: a store that cannot take a log stops the
    session before it claims anything, instead of every claimed phase failing on it."""
    return [_check("log store", lambda: probe_store(sink))]


def check_api_url(settings: Settings) -> list[Check]:
    if not settings.api_url:
        return []
    url = settings.api_url.rstrip("/") + "/health"

    def health() -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return f"{url} answered {response.status}"
        except urllib.error.HTTPError as err:
            raise ValueError(f"{url} answered {err.code}") from err
        except urllib.error.URLError as err:
            raise ValueError(f"{url} unreachable: {err.reason}") from err

    return [_check("api url", health)]


def check_cluster(api: KubeApi) -> list[Check]:
    checks = [_check("cluster", lambda: f"server {api.server_version().get('gitVersion', '?')}")]
    if not checks[0].ok:
        return checks

    def namespace() -> str:
        exists = api.namespace_exists()
        if exists is False:
            raise ValueError(f"namespace {api.namespace!r} does not exist")
        return api.namespace if exists else f"{api.namespace} (may not read namespaces; assumed)"

    checks.append(_check("namespace", namespace))
    missing: list[str] = []

    def access() -> str:
        for verb, resource, sub in REQUIRED_ACCESS:
            if not api.can_i(verb, resource, subresource=sub):
                missing.append(f"{verb} {resource}{'/' + sub if sub else ''}")
        if missing:
            raise ValueError(f"missing RBAC in namespace {api.namespace}: {', '.join(missing)}")
        return f"{len(REQUIRED_ACCESS)} verbs allowed"

    checks.append(_check("rbac", access))
    return checks


def check_kueue(api: KubeApi, queue: str | None) -> list[Check]:
    """Whether Kueue is installed and the session's LocalQueue exists (``--queue-name``).

    Without a queue it is only said, never a failure; with one, a missing Kueue or queue
    fails the preflight: the Jobs would wait suspended with nothing to admit them.
    """

    def kueue() -> str:
        try:
            version = api.kueue_version()
        except KubeError as err:
            if queue is not None:
                raise
            # Only said, never a failure: a session that queues nothing does not need Kueue.
            return f"not checked ({type(err).__name__}: {err.message}); no --queue-name: not needed"
        if queue is None:
            return f"installed ({version}); no --queue-name: Jobs are not queued" if version else \
                "not installed (no --queue-name: not needed)"
        if version is None:
            raise ValueError(f"--queue-name {queue}: Kueue is not installed (no API group kueue.x-k8s.io)")
        exists = api.local_queue_exists(queue, group_version=version)
        if exists is False:
            raise ValueError(f"--queue-name {queue}: no LocalQueue {queue!r} in namespace {api.namespace} ({version})")
        assumed = "" if exists else " (may not read localqueues; assumed)"
        return f"{version}: LocalQueue {queue} in namespace {api.namespace}{assumed}"

    return [_check("kueue", kueue)]


def as_record(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
