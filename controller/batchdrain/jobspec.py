"""Pure construction of the Job for one attempt: name, labels, spec. No API calls.

The Job name is a function of (session, run, phase, attempt) only, so a controller
that crashed between writing the attempt row and seeing its Job can re-create it and
hit AlreadyExists: it adopts that Job instead of running the phase twice. Labels make
a session listable (``kubectl get jobs -l batchdrain.io/session=ID``); ids that are
not valid label values are replaced by a readable prefix plus a hash, and the full
ids are kept in annotations.

Security defaults follow the restricted Pod Security Standard (non-root, read-only
root filesystem, no privilege escalation, all capabilities dropped, RuntimeDefault
seccomp) with an emptyDir at /tmp so Python and most tools still have a scratch dir.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

from batchdrain.domain import PhaseSpec
from batchdrain.identity import Identity
from batchdrain.launch import AttemptLaunch
from batchdrain.settings import Settings

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "batchdrain"
PREFIX = "batchdrain.io/"
LABEL_SESSION = PREFIX + "session"
LABEL_RUN = PREFIX + "run"
LABEL_PHASE = PREFIX + "phase"
LABEL_ATTEMPT = PREFIX + "attempt"
LOGS_FINALIZER = PREFIX + "logs"
CONTAINER = "phase"
# Kueue: the LocalQueue a Job is submitted to, and its WorkloadPriorityClass.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Labels the Job controller puts on its pods (the newer name first).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
RUN_AS_USER = 10001
NAME_MAX = 63
_HASH_LEN = 10
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def _digest(*parts: str, length: int) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:length]


def job_name(session_id: str, run_id: str, phase_id: str, attempt: int) -> str:
    """``bd-<run>-<phase>-<attempt>-<hash>``: DNS-1123, at most 63 chars, deterministic.

    The hash covers the full ids, so truncating the readable part never makes two
    attempts collide, and the same attempt always gets the same name.
    """
    digest = _digest(session_id, run_id, phase_id, str(attempt), length=_HASH_LEN)
    tail = f"-{attempt}-{digest}"
    readable = _NOT_DNS.sub("-", f"{run_id}-{phase_id}".lower()).strip("-")
    room = NAME_MAX - len("bd-") - len(tail)
    readable = readable[:room].strip("-")
    return f"bd-{readable}{tail}" if readable else f"bd{tail}"


def label_value(value: str) -> str:
    """``value`` itself when it is a valid label value, else a readable prefix + hash."""
    if len(value) <= NAME_MAX and _LABEL_VALUE.match(value):
        return value
    digest = _digest(value, length=12)
    readable = _NOT_LABEL.sub("_", value)[:40]
    readable = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", readable)
    return f"{readable}-{digest}" if readable else f"h-{digest}"


def session_selector(session_id: str) -> str:
    """The label selector of everything a session created."""
    return f"{MANAGED_BY}={MANAGER},{LABEL_SESSION}={label_value(session_id)}"


def job_name_of_pod(pod: dict[str, Any]) -> str | None:
    """The Job a pod belongs to, from the Job controller's labels or the owner reference."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for key in JOB_NAME_LABELS:
        if labels.get(key):
            return str(labels[key])
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "Job":
            return str(owner.get("name"))
    return None


class JobSpecBuilder:
    """Settings-wide choices, applied to each attempt by ``build()``."""

    def __init__(self, settings: Settings, *, namespace: str) -> None:
        self._settings = settings
        self._namespace = namespace

    @staticmethod
    def name(identity: Identity) -> str:
        return job_name(identity.session_id, identity.run_id, identity.phase_id, identity.attempt)

    @staticmethod
    def labels(identity: Identity) -> dict[str, str]:
        return {
            MANAGED_BY: MANAGER,
            LABEL_SESSION: label_value(identity.session_id),
            LABEL_RUN: label_value(identity.run_id),
            LABEL_PHASE: label_value(identity.phase_id),
            LABEL_ATTEMPT: str(identity.attempt),
        }

    @staticmethod
    def annotations(identity: Identity) -> dict[str, str]:
        return {
            LABEL_SESSION: identity.session_id,
            LABEL_RUN: identity.run_id,
            LABEL_PHASE: identity.phase_id,
            LABEL_ATTEMPT: str(identity.attempt),
        }

    def queue(self, request: AttemptLaunch) -> str | None:
        """The Kueue LocalQueue of the attempt's Job: the phase's own, else the session's."""
        return request.spec.queue or self._settings.queue_name

    def build(self, request: AttemptLaunch) -> dict[str, Any]:
        settings = self._settings
        identity = request.identity
        spec = request.spec
        labels = self.labels(identity)
        job_labels = dict(labels)
        queue = self.queue(request)
        if queue:
            job_labels[KUEUE_QUEUE_LABEL] = queue
        workload_priority = spec.workload_priority_class or settings.workload_priority_class
        if workload_priority:
            job_labels[KUEUE_PRIORITY_LABEL] = workload_priority
        annotations = self.annotations(identity)
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": request.image,
            "command": list(request.command),
            "env": self._env(request.env),
            "resources": self._resources(spec),
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            # The log tail becomes the termination message when the phase writes none:
            # one more source for the attempt's message if the log store is unreadable.
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        pull_policy = spec.image_pull_policy or settings.image_pull_policy
        if pull_policy:
            container["imagePullPolicy"] = pull_policy
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            # What a deadline or a deletion waits between SIGTERM and SIGKILL: the whole of
            # it when the phase is PID 1 with no SIGTERM handler (``python -c ...``).
            "terminationGracePeriodSeconds": settings.phase_termination_grace_seconds,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
        priority_class = spec.priority_class or settings.priority_class_name
        if priority_class:
            pod_spec["priorityClassName"] = priority_class
        if settings.service_account:
            pod_spec["serviceAccountName"] = settings.service_account
        else:
            # Phases talk to the database and the API URL, not to Kubernetes.
            pod_spec["automountServiceAccountToken"] = False
        node_selector = {**settings.node_selector, **dict(spec.node_selector)}
        if node_selector:
            pod_spec["nodeSelector"] = node_selector
        if settings.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
        if settings.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
        job_spec: dict[str, Any] = {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": max(1, math.ceil(request.timeout_seconds)),
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": annotations,
                    # Copied onto the pod by the Job controller: the pod (and so its
                    # logs) outlives deletion until the controller has stored them.
                    "finalizers": [LOGS_FINALIZER],
                },
                "spec": pod_spec,
            },
        }
        if queue:
            # The Job waits suspended (no pod) until Kueue admits it; its
            # activeDeadlineSeconds counts from the admission, not from its creation.
            job_spec["suspend"] = True
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.name(identity),
                "namespace": self._namespace,
                "labels": job_labels,
                "annotations": annotations,
            },
            "spec": job_spec,
        }

    def _env(self, env: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        settings = self._settings
        merged: dict[str, str] = {"HOME": "/tmp"}  # a writable home on a read-only root
        merged.update(env)
        out: list[dict[str, Any]] = []
        secret = settings.database_url_secret
        for name, value in merged.items():
            if secret and name == settings.env_database_url:
                continue
            out.append({"name": name, "value": value})
        if secret:
            # Never inlined when a Secret is configured: the value stays out of the Job.
            out.append(
                {
                    "name": settings.env_database_url,
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": settings.database_url_secret_key}},
                }
            )
        return out

    def _resources(self, spec: PhaseSpec) -> dict[str, Any]:
        values: dict[str, str] = {}
        cpu = spec.cpu or self._settings.cpu_request
        memory = spec.memory or self._settings.memory_limit
        if cpu:
            values["cpu"] = cpu
        if memory:
            values["memory"] = memory
        # Requests equal to limits: a phase gets what it is charged for (Guaranteed QoS
        # when both are set), and memory overuse is an OOM kill we can classify.
        return {"requests": dict(values), "limits": dict(values)} if values else {}
