"""Static checks of the Helm chart and the plain manifests: no cluster, only ``helm``.

They live beside the cluster tests because they guard what the cluster tests install,
but they need nothing but the ``helm`` binary, so a broken chart is caught in seconds
rather than after a cluster comes up. A missing ``helm`` is a failure, never a skip:
skipping would let a chart that no longer renders pass CI unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchdrain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "batchdrain"
ALL_VALUES = CHART / "ci" / "all-values.yaml"
MANIFESTS = ROOT / "manifests"
CACHED_HELM = Path.home() / ".cache" / "batchdrain" / "tools" / "bin" / "helm"
RELEASE = "ci"
NAMESPACE = "drains"

# The only permissions the controller gets: exactly what controller/batchdrain/preflight.py
# checks (REQUIRED_ACCESS). Tested as sets, so a widened verb list fails here.
INTENDED_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch", "patch", "delete"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "list", "watch"},
    ("kueue.x-k8s.io", "localqueues"): {"get"},  # the preflight's LocalQueue check
}

Obj = dict[str, Any]


def _helm() -> str:
    found = shutil.which("helm") or (str(CACHED_HELM) if os.access(CACHED_HELM, os.X_OK) else None)
    if found is None:
        pytest.fail(
            f"helm not found on PATH nor at {CACHED_HELM}: build it with `bash hack/tools/helm.sh` "
            "(builds helm v3 from its Go module; needs `go`), or install helm v3 on PATH",
            pytrace=False,
        )
    return found


def _run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def _template(*args: str, release: str = RELEASE) -> list[Obj]:
    result = _run_helm("template", release, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _template_fails(*args: str) -> str:
    result = _run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode != 0, f"helm template {' '.join(args)} should have failed:\n{result.stdout}"
    return result.stderr


def _one(docs: list[Obj], kind: str) -> Obj:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _kinds(docs: list[Obj]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def _pod_spec(cronjob: Obj) -> Obj:
    spec: Obj = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def _container(cronjob: Obj) -> Obj:
    containers = _pod_spec(cronjob)["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def _env(cronjob: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in _container(cronjob).get("env", [])}


def _rules(role: Obj) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


def _literal_env(cronjob: Obj) -> Iterator[tuple[str, str]]:
    for name, entry in _env(cronjob).items():
        if "value" in entry:
            yield name, entry["value"]


# -- lint and render ------------------------------------------------------------------


def test_helm_lint_is_clean_with_defaults_and_every_option() -> None:
    for extra in ([], ["--values", str(ALL_VALUES)]):
        result = _run_helm("lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, f"helm lint {extra} failed:\n{result.stdout}\n{result.stderr}"
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("args", "kinds"),
    [
        ([], ["CronJob", "PersistentVolumeClaim", "Role", "RoleBinding", "ServiceAccount"]),
        (["--set", "rbac.create=false"], ["CronJob", "PersistentVolumeClaim", "ServiceAccount"]),
        (["--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing"],
         ["CronJob", "PersistentVolumeClaim", "Role", "RoleBinding"]),
        (["--set", "persistence.enabled=false", "--set", "logStore=s3://bucket/x"],
         ["CronJob", "Role", "RoleBinding", "ServiceAccount"]),
        (["--set", "persistence.existingClaim=my-logs"], ["CronJob", "Role", "RoleBinding", "ServiceAccount"]),
        (["--values", str(ALL_VALUES)],
         ["ConfigMap", "CronJob", "PersistentVolumeClaim", "Role", "RoleBinding", "Secret", "Service",
          "ServiceAccount"]),
    ],
    ids=["defaults", "no-rbac", "existing-sa", "fsspec-logs", "existing-claim", "all-values"],
)
def test_template_renders(args: list[str], kinds: list[str]) -> None:
    docs = _template(*args)
    assert _kinds(docs) == kinds
    for doc in docs:
        # The dashboard goes where the Grafana sidecar watches (metrics.dashboard.namespace).
        assert doc["metadata"]["namespace"] == ("monitoring" if doc["kind"] == "ConfigMap" else NAMESPACE)
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "batchdrain"
        assert labels["helm.sh/chart"].startswith("batchdrain-")


def test_cronjob_is_named_release_dash_chart_for_kubectl_create_job_from() -> None:
    assert _one(_template(release="nightly"), "CronJob")["metadata"]["name"] == "nightly-batchdrain"
    # A release name that already contains the chart name is used as is.
    assert _one(_template(release="batchdrain"), "CronJob")["metadata"]["name"] == "batchdrain"


def test_rbac_false_still_names_the_service_account_and_renders_no_rbac() -> None:
    docs = _template("--set", "rbac.create=false")
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    assert _pod_spec(_one(docs, "CronJob"))["serviceAccountName"] == f"{RELEASE}-batchdrain"


# -- the CronJob ----------------------------------------------------------------------


def test_cronjob_secure_defaults_and_schedule() -> None:
    chart_text = (CHART / "templates" / "cronjob.yaml").read_text()
    assert "schedule: {{ .Values.cronjob.schedule | quote }}" in chart_text
    result = _run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--show-only",
                       "templates/cronjob.yaml")
    assert result.returncode == 0, result.stderr
    assert 'schedule: "*/15 * * * *"' in result.stdout  # quoted in the rendered YAML

    cronjob = _one(_template(), "CronJob")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec["schedule"], str)
    assert spec["suspend"] is False
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 0 and spec["failedJobsHistoryLimit"] >= 0

    pod = _pod_spec(cronjob)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = _container(cronjob)
    assert container["image"] == "batchdrain:dev"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][:2] == ["drain", "--quiet"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # A read-only root needs a writable /tmp; the logs volume holds the log store.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    env = _env(cronjob)
    assert env["BATCHDRAIN_LOG_STORE"]["value"] in mounts
    assert pod["terminationGracePeriodSeconds"] > float(env["BATCHDRAIN_TERM_GRACE_SECONDS"]["value"])


def test_cronjob_env_wires_namespace_database_secret_and_phase_defaults() -> None:
    env = _env(_one(_template(), "CronJob"))
    assert env["BATCHDRAIN_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["BATCHDRAIN_EXECUTOR"]["value"] == "kubernetes"
    assert env["BATCHDRAIN_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "batchdrain-database", "key": "database-url"}
    assert env["BATCHDRAIN_DATABASE_URL_SECRET"]["value"] == "batchdrain-database"
    assert env["BATCHDRAIN_DATABASE_URL_SECRET_KEY"]["value"] == "database-url"
    # No database URL is ever inlined.
    assert not [e for e in env.values() if "postgresql://" in str(e.get("value", ""))]


def test_every_literal_env_var_is_a_setting_that_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart speaks the controller's settings: a typo or a bad JSON list fails here."""
    cronjob = _one(_template("--values", str(ALL_VALUES)), "CronJob")
    for name in list(os.environ):
        if name.startswith("BATCHDRAIN_"):
            monkeypatch.delenv(name)
    literal = dict(_literal_env(cronjob))
    for name, value in literal.items():
        assert name.startswith("BATCHDRAIN_"), name
        assert name.removeprefix("BATCHDRAIN_").lower() in Settings.model_fields, f"{name} is not a setting"
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.executor == "kubernetes"
    assert settings.run_id == ["nightly reports", "etl/2026"]
    assert settings.batch_size == 200
    assert settings.skip_runs_with_queued is False
    assert settings.default_timeout_seconds == 900.5
    assert settings.node_selector == {"workload": "batch"}
    assert settings.tolerations == [{"key": "dedicated", "operator": "Equal", "value": "batch",
                                     "effect": "NoSchedule"}]
    assert settings.image_pull_secrets == ["regcred", "other"]
    assert settings.default_image == "registry.example/etl:1.4"
    assert settings.phase_termination_grace_seconds == 5
    assert settings.service_account == "phase-runner"
    assert settings.database_url_secret == "phase-database"
    assert settings.database_url_secret_key == "phase-url"
    assert settings.metrics_port == 9102
    assert settings.log_store == "/data/logs"
    assert settings.queue_name == "team-etl" and settings.workload_priority_class == "etl-nightly"
    assert settings.priority_class_name == "batch-low" and settings.admission_timeout_seconds == 7200.5


def test_kueue_values_are_validated() -> None:
    assert "/phases/kueue/queueName" in _template_fails("--set", "phases.kueue.queueName=Team_A")
    assert "/phases/kueue/admissionTimeoutSeconds" in _template_fails(
        "--set", "phases.kueue.admissionTimeoutSeconds=-1")
    assert "/phases/priorityClassName" in _template_fails("--set", "phases.priorityClassName=-x")
    env = _env(_one(_template(), "CronJob"))  # off by default: not queued, no priority class
    assert not {"BATCHDRAIN_QUEUE_NAME", "BATCHDRAIN_WORKLOAD_PRIORITY_CLASS", "BATCHDRAIN_PRIORITY_CLASS_NAME",
                "BATCHDRAIN_ADMISSION_TIMEOUT_SECONDS"} & set(env)


def test_all_values_render_what_they_say() -> None:
    docs = _template("--values", str(ALL_VALUES))
    cronjob = _one(docs, "CronJob")
    assert cronjob["metadata"]["name"] == "nightly-drain"
    assert cronjob["spec"]["schedule"] == "0 */2 * * *"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"]["suspend"] is True
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = _container(cronjob)
    assert container["args"] == ["drain", "--quiet", "--instant-threshold-seconds", "1.5"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    # database.url creates the Secret the controller reads (tests only).
    secret = _one(docs, "Secret")
    assert set(secret["data"]) == {"url"}
    assert _env(cronjob)["BATCHDRAIN_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"], "key": "url"}
    assert _one(docs, "PersistentVolumeClaim")["spec"]["storageClassName"] == ""
    service = _one(docs, "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == RELEASE
    assert set(service["spec"]["selector"].items()) <= set(
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].items())
    assert _one(docs, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "drain-controller", "namespace": NAMESPACE}]


# -- RBAC -----------------------------------------------------------------------------


def test_role_has_exactly_the_intended_verbs_and_no_secrets() -> None:
    docs = _template()
    role = _one(docs, "Role")
    rules = _rules(role)
    assert rules == INTENDED_RULES
    assert not [key for key in rules if key[1].startswith("secrets")]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = _one(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": _one(docs, "ServiceAccount")["metadata"]["name"],
         "namespace": NAMESPACE}]


# -- schema and guards ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "unknownKey=1"],
        ["--set", "cronjob.shedule=@hourly"],  # a typo of a real key
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "phases.image.pullPolicy=Sometimes"],
        ["--set", "persistence.accessModes[0]=ReadWriteAlways"],
        ["--set", "drain.parallelism=0"],
        ["--set", "metrics.port=70000"],
        ["--set", "phases.terminationGracePeriodSeconds=-1"],
        ["--set", "phases.terminationGracePeriodSeconds=601"],
    ],
    ids=["unknown-top", "unknown-nested", "bad-pull-policy", "bad-phase-pull-policy", "bad-access-mode",
         "zero-parallelism", "bad-port", "negative-phase-grace", "huge-phase-grace"],
)
def test_schema_rejects_bad_values(args: list[str]) -> None:
    assert "values don't meet the specifications of the schema" in _template_fails(*args)


def test_schema_is_draft7_and_closed_at_every_own_object_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Obj, value: Any, path: str) -> None:
        if node.get("type") != "object" or "properties" not in node:
            return
        assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
        assert set(value) <= set(node["properties"]), f"{path}: values.yaml has keys the schema lacks"
        assert set(node.get("required", [])) <= set(value), f"{path}: schema requires keys values.yaml lacks"
        for key, child in node["properties"].items():
            if isinstance(value.get(key), dict):
                walk(child, value[key], f"{path}.{key}".lstrip("."))

    walk(schema, values, "")


def test_guards_fail_with_a_message() -> None:
    assert "set logStore" in _template_fails("--set", "persistence.enabled=false")
    assert "not both" in _template_fails("--set", "logStore=s3://bucket/x")
    assert "database.existingSecret" in _template_fails("--set", "database.existingSecret=")


def test_every_value_is_documented() -> None:
    """helm-docs style: every leaf value has a ``# --`` comment right above it."""
    defaults_inside = ("resources.", "podSecurityContext.", "securityContext.")  # documented as a whole
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = stripped.partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), key])
        stack.append((indent, key))
        following = next((x for x in lines[number + 1:] if x.strip() and not x.strip().startswith("#")), "")
        is_group = not value.strip() and len(following) - len(following.lstrip()) > indent and not (
            following.strip().startswith("-"))
        if is_group or path.startswith(defaults_inside):
            continue
        block: list[str] = []
        for previous in reversed(lines[:number]):
            if not previous.strip().startswith("#"):
                break
            block.insert(0, previous.strip())
        assert block and block[0].startswith("# --"), f"values.yaml:{number + 1}: {path} has no `# --` comment"


# -- plain manifests ------------------------------------------------------------------


def _manifest_docs() -> dict[str, list[Obj]]:
    return {path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
            for path in sorted(MANIFESTS.glob("*.yaml"))}


def test_manifests_parse_and_kustomization_lists_them() -> None:
    files = _manifest_docs()
    kustomization = files.pop("kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    assert "secret.example.yaml" not in kustomization["resources"], "the example Secret must never be applied"
    assert sorted(kustomization["resources"]) == sorted(name for name in files if name != "secret.example.yaml")
    kinds = sorted(d["kind"] for docs in files.values() for d in docs)
    assert kinds == ["CronJob", "PersistentVolumeClaim", "Role", "RoleBinding", "Secret", "ServiceAccount"]
    for docs in files.values():
        for doc in docs:
            assert doc["metadata"]["namespace"] == kustomization["namespace"]
    secret = files["secret.example.yaml"][0]
    assert secret["metadata"]["name"] == "batchdrain-database"
    assert set(secret["stringData"]) == {"database-url"}
    assert "EXAMPLE" in (MANIFESTS / "secret.example.yaml").read_text()


def test_manifests_role_matches_the_chart() -> None:
    role = next(d for docs in _manifest_docs().values() for d in docs if d["kind"] == "Role")
    assert _rules(role) == _rules(_one(_template(), "Role")) == INTENDED_RULES


def test_manifests_cronjob_matches_the_chart_where_it_matters() -> None:
    files = _manifest_docs()
    cronjob = files["cronjob.yaml"][0]
    chart_cronjob = _one(_template(), "CronJob")
    for key in ("schedule", "concurrencyPolicy", "startingDeadlineSeconds", "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit"):
        assert cronjob["spec"][key] == chart_cronjob["spec"][key], key
    assert _pod_spec(cronjob)["securityContext"] == _pod_spec(chart_cronjob)["securityContext"]
    container, chart_container = _container(cronjob), _container(chart_cronjob)
    for key in ("image", "imagePullPolicy", "args", "securityContext", "resources"):
        assert container[key] == chart_container[key], key
    env, chart_env = _env(cronjob), _env(chart_cronjob)
    for name in ("BATCHDRAIN_NAMESPACE", "BATCHDRAIN_EXECUTOR", "BATCHDRAIN_DATABASE_URL",
                 "BATCHDRAIN_DATABASE_URL_SECRET", "BATCHDRAIN_DATABASE_URL_SECRET_KEY", "BATCHDRAIN_LOG_STORE"):
        assert env[name] == chart_env[name], name
    binding = files["rolebinding.yaml"][0]
    account = files["serviceaccount.yaml"][0]["metadata"]["name"]
    assert _pod_spec(cronjob)["serviceAccountName"] == account
    assert binding["subjects"][0]["name"] == account
    claim = files["pvc.yaml"][0]["metadata"]["name"]
    volumes = {v["name"]: v for v in _pod_spec(cronjob)["volumes"]}
    assert volumes["logs"]["persistentVolumeClaim"]["claimName"] == claim
    assert env["BATCHDRAIN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == files[
        "secret.example.yaml"][0]["metadata"]["name"]


# -- NOTES.txt ------------------------------------------------------------------------


def test_notes_show_the_ad_hoc_session_and_session_listing(tmp_path: Path) -> None:
    """`helm template` skips NOTES.txt, and `helm install --dry-run` needs a cluster:
    render it through `tpl` in a scratch copy of the chart instead."""
    chart = tmp_path / "batchdrain"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.tpl")
    (chart / "templates" / "zz-notes-preview.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes.tpl") . | toJson }}\n')
    result = _run_helm("template", "nightly", str(chart), "--namespace", NAMESPACE,
                       "--show-only", "templates/zz-notes-preview.yaml")
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["notes"]
    assert f"kubectl -n {NAMESPACE} create job --from=cronjob/nightly-batchdrain manual-1" in notes
    assert f"kubectl -n {NAMESPACE} get jobs -l batchdrain.io/session=" in notes


S3_ARGS = ["--set", "s3.enabled=true", "--set", "s3.url=s3://drain-logs/prod",
           "--set", "s3.endpoint=http://10.88.0.1:18333", "--set-string", "s3.options.addressing_style=path"]


def test_s3_log_store_turns_the_pvc_off_and_wires_options_and_credentials() -> None:
    docs = _template(*S3_ARGS, "--set", "s3.credentials.existingSecret=drain-s3",
                     "--set", "s3.credentials.sessionTokenKey=token")
    assert _kinds(docs) == ["CronJob", "Role", "RoleBinding", "ServiceAccount"]  # no PVC
    cronjob = _one(docs, "CronJob")
    env = _env(cronjob)
    assert env["BATCHDRAIN_LOG_STORE"]["value"] == "s3://drain-logs/prod"
    options = json.loads(env["BATCHDRAIN_LOG_STORE_OPTIONS"]["value"])
    assert options == {"endpoint_url": "http://10.88.0.1:18333", "addressing_style": "path"}
    # The JSON is what the controller's settings read from that variable.
    assert Settings(log_store_options=options).log_store_options == options
    for name, key in (("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
                      ("AWS_SESSION_TOKEN", "token")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "drain-s3", "key": key}
        assert "value" not in env[name]  # never inlined
    mounts = {m["name"] for m in _container(cronjob)["volumeMounts"]}
    volumes = {v["name"] for v in _pod_spec(cronjob)["volumes"]}
    assert "logs" not in mounts and "logs" not in volumes


def test_s3_log_store_with_workload_identity_has_no_credentials_env() -> None:
    role = "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/x"
    docs = _template(*S3_ARGS, "--set", role)
    env = _env(_one(docs, "CronJob"))
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    account = _one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}


def test_s3_values_are_validated() -> None:
    assert "s3.url" in _template_fails("--set", "s3.enabled=true") or "/s3/url" in _template_fails(
        "--set", "s3.enabled=true")
    assert "/s3/url" in _template_fails("--set", "s3.enabled=true", "--set", "s3.url=/var/logs")
    assert "bogus" in _template_fails(*S3_ARGS, "--set-string", "s3.options.bogus=1")
    assert "/s3/endpoint" in _template_fails(*S3_ARGS, "--set", "s3.endpoint=10.88.0.1:18333")
    assert "not both" in _template_fails(*S3_ARGS, "--set", "logStore=gs://other")
    assert "/s3" in _template_fails("--set", "s3.nope=1")


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar_only_when_enabled() -> None:
    assert not [o for o in _template() if o["kind"] == "ConfigMap"]  # off by default
    (configmap,) = [o for o in _template("--set", "metrics.dashboard.enabled=true") if o["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == NAMESPACE
    shipped = json.loads(configmap["data"]["batchdrain.json"])
    assert shipped == json.loads((CHART / "dashboards" / "batchdrain.json").read_text())
    (elsewhere,) = [o for o in _template("--values", str(ALL_VALUES)) if o["kind"] == "ConfigMap"]
    assert elsewhere["metadata"]["namespace"] == "monitoring"
    assert elsewhere["metadata"]["annotations"] == {"grafana_folder": "Batch"}
