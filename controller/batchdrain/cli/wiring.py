"""What a command is wired to: the database, the cluster, the executor, the preflight checks.

Everything opened here is closed when the command ends (``resources``, unwound by
``main``), not left to the garbage collector.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from batchdrain.db import Database
from batchdrain.domain import BadInput
from batchdrain.executors.base import Executor
from batchdrain.executors.local import LocalExecutor
from batchdrain.executors.resources import capacity_problem, current_limits
from batchdrain.kube import KubeApi, KubeError
from batchdrain.logstore import LogSink, open_log_sink
from batchdrain.metrics import Metrics
from batchdrain.preflight import (
    Check,
    check_api_url,
    check_cluster,
    check_database,
    check_kueue,
    check_log_store,
)
from batchdrain.settings import Settings

resources = contextlib.ExitStack()


def open_db(settings: Settings, *, migrate: bool = True) -> Database:
    db = Database(settings.database_url, retry_attempts=settings.retry_attempts,
                  retry_max_seconds=settings.retry_max_seconds)
    # Pooled connections are closed when the command ends, not left to the garbage collector.
    resources.callback(db.dispose)
    if migrate:
        db.ensure_schema(auto_upgrade=False)
    return db


def check_capacity(settings: Settings, executor: str) -> None:
    """``--parallelism`` against the open-file and process limits (``executors.resources``)."""
    problem = capacity_problem(settings.parallelism, executor=executor, limits=current_limits())
    if problem:
        raise BadInput(problem)


def serve_metrics(metrics: Metrics, port: int) -> None:
    try:
        metrics.serve(port)
    except OSError as exc:
        raise BadInput(f"cannot serve metrics on port {port}: {exc.strerror or exc} "
                       "(--metrics-port or BATCHDRAIN_METRICS_PORT)") from exc


def open_sink(settings: Settings) -> LogSink:
    """The log store of the settings (``BadInput`` for an option it does not take, a missing extra)."""
    try:
        return open_log_sink(settings.log_store, write_retry_seconds=settings.log_write_retry_seconds,
                             options=settings.log_store_options, retry_attempts=settings.retry_attempts,
                             retry_max_seconds=settings.retry_max_seconds)
    except ImportError as exc:  # another fsspec scheme's backend (s3:// names its extra itself)
        scheme = settings.log_store.partition("://")[0]
        module = exc.name or f"the fsspec backend for {scheme}://"
        raise BadInput(f"log store {settings.log_store}: {module} is not installed: install {module} "
                       "(--log-store or BATCHDRAIN_LOG_STORE)") from exc


def kube_config_present(settings: Settings) -> bool:
    if settings.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = [*os.environ.get("KUBECONFIG", "").split(os.pathsep), str(Path("~/.kube/config").expanduser())]
    return any(p and Path(p).is_file() for p in paths)


def choose_executor(settings: Settings) -> tuple[str, str]:
    """(executor name, why) for the settings: ``auto`` means kubernetes when a config exists."""
    if settings.executor != "auto":
        return settings.executor, "--executor"
    if kube_config_present(settings):
        return "kubernetes", "a kubeconfig or in-cluster config was found"
    return "local", "no kubeconfig found"


def connect_cluster(settings: Settings, metrics: Metrics) -> KubeApi:
    from batchdrain.kube import connect

    try:
        return connect(settings, on_retry=lambda _call, _error: metrics.api_retries.inc())
    except KubeError as exc:
        raise BadInput(f"cannot use the cluster: {exc}") from exc


def make_executor(settings: Settings, api: KubeApi | None) -> Executor:
    """Kubernetes Jobs when connected to a cluster, local processes otherwise."""
    if api is not None:
        from batchdrain.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(api, settings)
    return LocalExecutor()


def run_preflight(settings: Settings, db: Database, api: KubeApi | None,
                  sink: LogSink | None = None) -> list[Check]:
    checks = check_database(db) + check_api_url(settings)
    if sink is not None:
        checks += check_log_store(sink)
    if api is not None:
        checks += check_cluster(api)
        if all(c.ok for c in checks if c.name == "cluster"):
            checks += check_kueue(api, settings.queue_name)
    return checks
