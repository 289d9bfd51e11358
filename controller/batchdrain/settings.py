"""All configuration, from ``BATCHDRAIN_*`` environment variables, overridden by CLI flags.

One flat model on purpose: the CLI derives one ``--flag`` per field from it, so an
option cannot exist as an env var and be missing as a flag (or the reverse). Every
number is bounded by what it feeds (``bounds``): no ``inf``, no ``nan``, nothing that
overflows a wait, a Kubernetes field or a database column.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batchdrain.bounds import INT32_MAX, INT64_MAX, MAX_PORT, MAX_SECONDS

ExecutorName = Literal["auto", "local", "kubernetes"]
# Jobs per second: the limiter sleeps 1/rate between creations, which must be a wait
# Python can make (``bounds.MAX_SECONDS``). Any finite rate above is fine (1e9: no wait).
MIN_RATE = 1 / MAX_SECONDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHDRAIN_", extra="forbid", frozen=True)

    # -- where things are
    database_url: str = Field(
        "sqlite:///./batchdrain.db",
        description="Backlog database (SQLAlchemy URL: sqlite:///file.db or postgresql://...).",
    )
    log_store: str = Field(
        "./.batchdrain/logs",
        description="Durable log storage: a directory, s3://bucket/prefix (extra batchdrain[s3]) or an fsspec URL.",
    )
    log_store_options: dict[str, str] = Field(
        default_factory=dict,
        description="Options of an s3:// log store, KEY=VALUE, repeatable (endpoint_url, region, "
                    "addressing_style, verify, anon, part_size, flush_seconds, connect_timeout, read_timeout); "
                    "in the environment a JSON object.",
    )
    api_url: str | None = Field(None, description="API URL injected into every phase.")
    executor: ExecutorName = Field(
        "auto", description="auto (kubernetes when a kubeconfig exists), local or kubernetes."
    )

    # -- selection (SPEC section 2)
    run_id: list[str] = Field(
        default_factory=list, description="Only drain these runs (repeatable)."
    )
    batch_size: int | None = Field(None, ge=1, le=INT64_MAX, description="Most phases started per session.")
    max_attempts: int = Field(3, ge=1, le=INT32_MAX, description="Most attempts per phase, over all sessions.")
    parallelism: int = Field(4, ge=1, le=INT32_MAX, description="Most phases running at once.")
    skip_runs_with_queued: bool = Field(
        True, description="Do not retry FAILED phases of a run that still has QUEUED phases."
    )
    include_parked: bool = Field(False, description="Also select phases parked as SKIPPED.")
    park_after: int = Field(
        3, ge=2, le=INT32_MAX, description="Park a phase after this many identical non-transient failures."
    )
    # Retry backoff (README "Retry backoff"): a failed phase waits
    # retry_delay * factor^(attempts-1), capped, before it is a candidate again.
    retry_delay_seconds: float = Field(
        60.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Wait after a phase's first failed attempt before retrying it (0: at once).",
    )
    retry_backoff_factor: float = Field(
        2.0, ge=1, le=100, allow_inf_nan=False,
        description="Each further failed attempt multiplies the wait by this."
    )
    retry_delay_max_seconds: float = Field(
        3600.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="The longest wait between attempts of a phase."
    )
    transient_retry_delay_seconds: float | None = Field(
        None, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Flat wait after a transient failure (evicted, node_lost, pod_deleted, "
                    "controller_interrupted, api_error); unset: the same backoff as other failures.",
    )

    # -- execution
    default_image: str = Field("python:3.11-slim", description="Image when a phase names none.")
    default_timeout_seconds: float = Field(
        3600.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Timeout when none given."
    )
    term_grace_seconds: float = Field(
        20.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="After SIGTERM, how long to keep collecting running phases."
    )
    lease_seconds: float = Field(
        120.0, gt=1, le=MAX_SECONDS, allow_inf_nan=False,
        description="A claimed phase's lease; renewed while its session lives."
    )
    instant_threshold_seconds: float = Field(
        0.5, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Attempts faster than this without an explaining class are flagged."
    )
    retry_attempts: int = Field(
        6, ge=1, le=INT32_MAX, description="Bounded retries for transient API server and database errors."
    )
    retry_max_seconds: float = Field(
        30.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Give up retrying after this long."
    )
    log_write_retry_seconds: float = Field(
        300.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="How long a log write waits for space on a full log store (ENOSPC) before "
                    "the log is marked incomplete and the session stops.",
    )

    # -- identity injected into phases (variable names are configurable)
    env_database_url: str = Field("DATABASE_URL", description="Env var name for the DB URL.")
    env_api_url: str = Field("BATCHDRAIN_API_URL", description="Env var name for the API URL.")
    env_run_id: str = Field("BATCHDRAIN_RUN_ID", description="Env var name for the run id.")
    env_phase_id: str = Field("BATCHDRAIN_PHASE_ID", description="Env var name for the phase id.")
    env_session_id: str = Field(
        "BATCHDRAIN_SESSION_ID", description="Env var name for the session id."
    )
    env_attempt: str = Field("BATCHDRAIN_ATTEMPT", description="Env var name for the attempt.")
    phase_database_url: str | None = Field(
        None, description="DATABASE_URL given to phases when it differs from the controller's."
    )

    # -- Kubernetes
    kubeconfig: str | None = Field(None, description="Path to a kubeconfig (as kubectl).")
    context: str | None = Field(None, description="Kubeconfig context (as kubectl).")
    namespace: str | None = Field(None, description="Namespace for Jobs (as kubectl).")
    service_account: str | None = Field(None, description="Service account of phase pods.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="imagePullPolicy of phase pods."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Pull secret names.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[dict[str, str]] = Field(
        default_factory=list, description="Pod tolerations (JSON list)."
    )
    cpu_request: str | None = Field(None, description="Default CPU request/limit of phase pods.")
    memory_limit: str | None = Field(None, description="Default memory request/limit of pods.")
    database_url_secret: str | None = Field(
        None, description="Secret holding the DB URL for pods (never inlined when set)."
    )
    database_url_secret_key: str = Field("database-url", description="Key inside that Secret.")
    job_ttl_seconds: int = Field(
        3600, ge=0, le=INT32_MAX, description="ttlSecondsAfterFinished backstop; the controller deletes first."
    )
    job_create_rate: float = Field(
        10.0, ge=MIN_RATE, allow_inf_nan=False,
        description="Most Jobs created per second."
    )
    phase_termination_grace_seconds: int = Field(
        30, ge=0, le=600,
        description="terminationGracePeriodSeconds of phase pods: SIGTERM to SIGKILL when a deadline "
                    "or a deletion stops a phase (a phase run as PID 1 without a handler ignores SIGTERM).",
    )
    scheduling_timeout_seconds: float = Field(
        120.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Pending unscheduled past this is classed unschedulable."
    )
    start_timeout_seconds: float = Field(
        300.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Scheduled but not started past this is a failure."
    )
    # -- Kueue and priorities (a phase's own queue/priority_class/workload_priority_class win)
    queue_name: str | None = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
        description="Kueue LocalQueue of the Jobs (label kueue.x-k8s.io/queue-name): Jobs are created "
                    "suspended and Kueue admits them within its quota.",
    )
    priority_class_name: str | None = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253,
        description="priorityClassName of phase pods.",
    )
    workload_priority_class: str | None = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
        description="Kueue WorkloadPriorityClass of the Jobs (label kueue.x-k8s.io/priority-class).",
    )
    admission_timeout_seconds: float = Field(
        0.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="A queued Job not admitted by Kueue within this is classed unschedulable (0: wait "
                    "as long as the queue holds it; the wait never counts against the scheduling timeout).",
    )
    metrics_port: int | None = Field(None, ge=1, le=MAX_PORT, description="Serve Prometheus here.")

    @field_validator("run_id")
    @classmethod
    def _run_ids_not_blank(cls, value: list[str]) -> list[str]:
        for run_id in value:
            if not run_id.strip():
                raise ValueError("run id filter must not be blank")
        return value

    def identity_names(self) -> dict[str, str]:
        return {
            "database_url": self.env_database_url,
            "api_url": self.env_api_url,
            "run_id": self.env_run_id,
            "phase_id": self.env_phase_id,
            "session_id": self.env_session_id,
            "attempt": self.env_attempt,
        }


ENV_PREFIX = "BATCHDRAIN_"
# Variables of our prefix that are not settings: the identity given to phases (default
# names) and the switches of the project's own tests and tooling.
NOT_SETTINGS = frozenset({"BATCHDRAIN_PHASE_ID", "BATCHDRAIN_SESSION_ID", "BATCHDRAIN_ATTEMPT", "BATCHDRAIN_DEBUG",
                          "BATCHDRAIN_CACHE", "BATCHDRAIN_TOOLS_DIR", "BATCHDRAIN_CLUSTER_STATE"})
NOT_SETTINGS_PREFIXES = ("BATCHDRAIN_TEST_", "BATCHDRAIN_E2E_", "BATCHDRAIN_FAULTS_")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``BATCHDRAIN_*`` variable that is no setting (pydantic-settings
    ignores them silently: a typo would drain with the default), naming the closest one."""
    known = {env_name(name) for name in Settings.model_fields}
    warnings = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NOT_SETTINGS \
                or upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        # Compared without the prefix they all share, which would make any name look close.
        names = sorted(name.upper() for name in Settings.model_fields)
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), names, n=1, cutoff=0.6)
        hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "no setting has a name close to it"
        warnings.append(f"unknown environment variable {key} ignored ({hint})")
    return warnings
