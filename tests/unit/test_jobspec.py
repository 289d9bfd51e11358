"""JobSpecBuilder: names, labels and the security/identity parts of the Job body."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from batchdrain.domain import PhaseSpec
from batchdrain.identity import Identity
from batchdrain.jobspec import (
    LOGS_FINALIZER,
    JobSpecBuilder,
    job_name,
    label_value,
    session_selector,
)
from batchdrain.launch import AttemptLaunch
from batchdrain.settings import Settings

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SECRET_URL = "postgresql://app:s3cret@db:5432/batch"


def request(identity: Identity, **spec: object) -> AttemptLaunch:
    phase = PhaseSpec(command=("python", "-c", "print(1)"), **spec)  # type: ignore[arg-type]
    settings = Settings()
    return AttemptLaunch(
        identity=identity,
        spec=phase,
        command=phase.command,
        env=(*identity.env(settings).items(), ("EXTRA", "1")),
        image="python:3.11-slim",
        timeout_seconds=90.5,
    )


def ident(run: str = "run-1", phase: str = "phase-1", attempt: int = 1) -> Identity:
    return Identity("batch-drain-20250101-120000", run, phase, attempt, SECRET_URL, "http://api:8000")


@pytest.mark.parametrize(
    ("run", "phase"),
    [("run-1", "phase-1"), ("Run With Spaces/ünïcode", "Ph@se#1"), ("r" * 300, "p" * 300), ("---", "___")],
)
def test_job_name_is_dns_safe_short_and_deterministic(run: str, phase: str) -> None:
    name = job_name("batch-drain-20250101-120000", run, phase, 3)
    assert len(name) <= 63
    assert DNS_1123.match(name), name
    assert name == job_name("batch-drain-20250101-120000", run, phase, 3)


def test_job_name_differs_by_every_part() -> None:
    base = ("s", "r" * 100, "p" * 100, 1)
    names = {
        job_name(*base),
        job_name("s2", *base[1:]),
        job_name("s", "r" * 100 + "x", "p" * 100, 1),
        job_name("s", "r" * 100, "p" * 100 + "x", 1),
        job_name("s", "r" * 100, "p" * 100, 2),
    }
    assert len(names) == 5  # the truncated readable part is the same; the hash is not


def test_label_values_pass_through_or_hash() -> None:
    assert label_value("batch-drain-20250101-120000") == "batch-drain-20250101-120000"
    for bad in ("run with spaces", "x" * 64, "-leading", "trailing.", "ünïcode", "a/b"):
        value = label_value(bad)
        assert len(value) <= 63 and LABEL.match(value), value
        assert value == label_value(bad)
    assert label_value("a/b") != label_value("a_b")


def test_session_selector_names_manager_and_session() -> None:
    assert (
        session_selector("s 1") == f"app.kubernetes.io/managed-by=batchdrain,batchdrain.io/session={label_value('s 1')}"
    )


def test_job_spec_essentials() -> None:
    settings = Settings(
        job_ttl_seconds=600,
        service_account="runner",
        node_selector={"pool": "batch"},
        tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=["regcred"],
        image_pull_policy="IfNotPresent",
        cpu_request="500m",
        memory_limit="256Mi",
    )
    job = JobSpecBuilder(settings, namespace="ns").build(request(ident(run="run 1"), node_selector=(("zone", "a"),)))
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["namespace"] == "ns"
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 91
    assert spec["ttlSecondsAfterFinished"] == 600
    assert pod["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["finalizers"] == [LOGS_FINALIZER]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "batchdrain"
    assert labels["batchdrain.io/run"] == label_value("run 1") != "run 1"
    assert job["metadata"]["annotations"]["batchdrain.io/run"] == "run 1"
    assert spec["template"]["metadata"]["labels"] == labels
    assert pod["serviceAccountName"] == "runner"
    assert "automountServiceAccountToken" not in pod
    assert pod["nodeSelector"] == {"pool": "batch", "zone": "a"}
    assert pod["tolerations"][0]["key"] == "batch"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert container["command"] == ["python", "-c", "print(1)"]


def test_termination_grace_of_phase_pods_is_a_bounded_whole_number_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    def grace(settings: Settings) -> object:
        return JobSpecBuilder(settings, namespace="ns").build(request(ident()))["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]

    assert grace(Settings()) == 30  # Kubernetes' own default, now said out loud
    assert grace(Settings(phase_termination_grace_seconds=0)) == 0
    monkeypatch.setenv("BATCHDRAIN_PHASE_TERMINATION_GRACE_SECONDS", "2")
    assert grace(Settings()) == 2
    monkeypatch.delenv("BATCHDRAIN_PHASE_TERMINATION_GRACE_SECONDS")
    for bad in (-1, 601, 2.5, "soon"):
        with pytest.raises(ValidationError, match="phase_termination_grace_seconds"):
            Settings(phase_termination_grace_seconds=bad)


def test_phase_resources_override_settings_and_no_sa_means_no_token() -> None:
    job = JobSpecBuilder(Settings(memory_limit="1Gi"), namespace="ns").build(request(ident(), memory="64Mi"))
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "64Mi"}
    assert pod["automountServiceAccountToken"] is False


def test_identity_env_inlined_without_secret() -> None:
    job = JobSpecBuilder(Settings(), namespace="ns").build(request(ident()))
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"] == SECRET_URL
    assert env["BATCHDRAIN_RUN_ID"] == "run-1"
    assert env["BATCHDRAIN_SESSION_ID"] == "batch-drain-20250101-120000"
    assert env["BATCHDRAIN_ATTEMPT"] == "1"
    assert env["PYTHONUTF8"] == "1" and env["PYTHONIOENCODING"] == "utf-8"
    assert env["EXTRA"] == "1"


def test_database_url_from_secret_is_never_inlined() -> None:
    settings = Settings(database_url_secret="db-url", database_url_secret_key="url")
    job = JobSpecBuilder(settings, namespace="ns").build(request(ident()))
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    db = [e for e in env if e["name"] == "DATABASE_URL"]
    assert db == [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db-url", "key": "url"}}}]
    assert "s3cret" not in json.dumps(job)
