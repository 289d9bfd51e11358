"""In-cluster drains (issue 5): the Helm chart's CronJob drains a backlog on Postgres,
``kubectl create job --from=cronjob/...`` runs an ad-hoc session, and the controller's
ServiceAccount can do what it needs and nothing more.

Postgres runs on this machine, listening on an address pods can reach (the node's
InternalIP here; ``BATCHDRAIN_E2E_HOST_ADDRESS`` elsewhere, e.g. the docker bridge
gateway on kind), with password auth so the password's path through the chart's
Secret can be checked. Logs go to a hostPath PersistentVolume we read back directly.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kubernetes import client

from batchdrain.db import AttemptRecord, Database
from tests.e2e.conftest import IMAGE, SRC, Cluster, wait_for
from tests.pgserver import PostgresServer, start_postgres

CHART = Path(__file__).resolve().parents[2] / "helm" / "batchdrain"
RELEASE = "e2e"
FULLNAME = f"{RELEASE}-batchdrain"


def helm() -> str:
    found = shutil.which("helm") or str(Path("~/.cache/batchdrain/tools/bin/helm").expanduser())
    if not Path(found).is_file():
        pytest.fail("helm not found: bash hack/tools/helm.sh builds it", pytrace=False)
    return found


def kubectl() -> str:
    found = shutil.which("kubectl") or next(iter(Path("~/.cache/batchdrain").expanduser().glob("k8s-*/bin/kubectl")),
                                            None)
    if not found:
        pytest.fail("kubectl not found on PATH", pytrace=False)
    return str(found)


def host_address(cluster: Cluster) -> str:
    given = os.environ.get("BATCHDRAIN_E2E_HOST_ADDRESS")
    if given:
        return given
    node = cluster.core.list_node().items[0]
    return next(a.address for a in node.status.addresses if a.type == "InternalIP")


@pytest.fixture(scope="module")
def postgres(cluster: Cluster) -> Iterator[PostgresServer]:
    server = start_postgres(host=host_address(cluster), password=f"pw-{secrets.token_hex(8)}")
    try:
        yield server
    finally:
        server.stop()


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=300, env=env, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])}... failed ({done.returncode}): {done.stderr}{done.stdout}")
    return done


def batchdrain(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")}, "PYTHONPATH": SRC}
    return run(sys.executable, "-m", "batchdrain.cli", *argv, env=env)


@pytest.fixture(scope="module")
def installed(cluster: Cluster, namespace: str, postgres: PostgresServer, tmp_path_factory) -> Iterator[dict]:
    """The chart installed with a CronJob every minute, a Postgres backlog and a hostPath log volume."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE backlog")
    db_url = postgres.url.rsplit("/", 1)[0] + "/backlog"
    log_dir = Path(tmp_path_factory.mktemp("volume"))
    log_dir.chmod(0o777)  # the controller runs as uid 10001
    pv = f"{namespace}-logs"
    cluster.core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=pv, labels={"batchdrain.io/e2e": "true"}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="",
            persistent_volume_reclaim_policy="Retain", host_path=client.V1HostPathVolumeSource(path=str(log_dir)),
            claim_ref=client.V1ObjectReference(namespace=namespace, name="logs"))))
    cluster.core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="logs"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"], storage_class_name="",
                                                volume_name=pv,
                                                resources=client.V1VolumeResourceRequirements(
                                                    requests={"storage": "1Gi"}))))
    repository, _, tag = IMAGE.partition(":")
    sets = {
        "image.repository": repository, "image.tag": tag or "latest", "image.pullPolicy": "IfNotPresent",
        "phases.image.repository": repository, "phases.image.tag": tag or "latest",
        "phases.image.pullPolicy": "IfNotPresent",
        "cronjob.schedule": "* * * * *", "database.existingSecret": "", "database.url": db_url,
        "persistence.existingClaim": "logs",
    }
    args = [arg for key, value in sets.items() for arg in ("--set-string", f"{key}={value}")]
    args += ["--set", "drain.parallelism=3"]
    run(helm(), "install", RELEASE, str(CHART), "--namespace", namespace, "--kubeconfig", cluster.kubeconfig,
        "--wait", "--timeout", "2m", *args)
    try:
        yield {"db_url": db_url, "log_dir": log_dir, "password": postgres.password}
    finally:
        run(helm(), "uninstall", RELEASE, "--namespace", namespace, "--kubeconfig", cluster.kubeconfig, check=False)
        cluster.core.delete_persistent_volume(pv)


def enqueue(db_url: str, run_id: str, count: int) -> None:
    for i in range(count):
        batchdrain("enqueue", "--database-url", db_url, "--run-id", run_id, "--phase-id", f"p{i}", "--",
                   "python3", "-c", "import os; print('hello from', os.environ['BATCHDRAIN_PHASE_ID'], "
                                    "'db set:', bool(os.environ.get('DATABASE_URL')))")


def controller_jobs(cluster: Cluster, namespace: str) -> list[client.V1Job]:
    jobs = cluster.batch.list_namespaced_job(namespace).items
    return [j for j in jobs if not (j.metadata.labels or {}).get("batchdrain.io/session")]


def finished(job: client.V1Job) -> bool:
    return bool(job.status.succeeded or job.status.failed)


def attempts_of(db_url: str, run_id: str) -> list[AttemptRecord]:
    db = Database(db_url)
    try:
        return db.attempts(run_id=run_id)
    finally:
        db.dispose()


def check_session(installed: dict, run_id: str, count: int) -> str:
    rows = attempts_of(installed["db_url"], run_id)
    assert len(rows) == count and {r.failure_class for r in rows} == {"succeeded"}, rows
    (session_id,) = {r.session_id for r in rows}
    for row in rows:
        (pointer,) = [p for p in row.logs if p.stream in ("stdout", "combined")]
        # the pointer is the path inside the controller pod; the same file is on our hostPath volume
        on_volume = installed["log_dir"] / Path(pointer.url).relative_to("/var/lib/batchdrain/logs")
        data = on_volume.read_bytes()
        assert f"hello from {row.phase_id} db set: True".encode() in data
        assert installed["password"].encode() not in data
    report = installed["log_dir"] / session_id / "session.json"
    text = report.read_text("utf-8")
    assert json.loads(text)["leaks"] == [] and installed["password"] not in text
    return session_id


def session_from_cronjob(cluster: Cluster, namespace: str, prefix: str) -> client.V1Job:
    """``kubectl create job --from=cronjob/...``, and the Job once it has finished."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "create", "job",
        f"--from=cronjob/{FULLNAME}", name)
    wait_for(lambda: finished(cluster.batch.read_namespaced_job(name, namespace)), f"job {name}", timeout=240,
             interval=2)
    return cluster.batch.read_namespaced_job(name, namespace)


def test_cronjob_session_drains_the_backlog(cluster: Cluster, namespace: str, installed: dict):
    enqueue(installed["db_url"], "scheduled", 3)
    job = wait_for(lambda: next((j for j in controller_jobs(cluster, namespace)
                                 if j.metadata.owner_references and finished(
                                     cluster.batch.read_namespaced_job(j.metadata.name, namespace))), None),
                   "a CronJob session to run and finish", timeout=240, interval=2)
    assert job.metadata.owner_references[0].kind == "CronJob"
    session_id = check_session(installed, "scheduled", 3)
    selector = f"batchdrain.io/session={session_id}"
    assert cluster.batch.list_namespaced_job(namespace, label_selector=selector).items == []


def test_kubectl_create_job_from_cronjob(cluster: Cluster, namespace: str, installed: dict):
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "patch", "cronjob", FULLNAME,
        "-p", '{"spec": {"suspend": true}}')
    wait_for(lambda: all(finished(j) for j in controller_jobs(cluster, namespace)), "scheduled sessions to end",
             timeout=240, interval=2)
    enqueue(installed["db_url"], "adhoc", 2)
    assert session_from_cronjob(cluster, namespace, "manual").status.succeeded == 1
    check_session(installed, "adhoc", 2)


@pytest.mark.parametrize(("verb", "resource", "where", "allowed"), [
    ("create", "jobs.batch", "own", True), ("delete", "jobs.batch", "own", True),
    ("watch", "pods", "own", True), ("patch", "pods", "own", True), ("get", "pods/log", "own", True),
    ("list", "events", "own", True),
    ("get", "secrets", "own", False), ("create", "pods", "own", False), ("delete", "pods", "own", True),
    ("create", "jobs.batch", "default", False), ("list", "pods", "default", False),
    ("update", "roles.rbac.authorization.k8s.io", "own", False),
])
def test_service_account_can_do_what_it_needs_and_nothing_more(cluster, namespace, installed, verb, resource,
                                                               where, allowed):
    target = namespace if where == "own" else "default"
    done = run(kubectl(), "--kubeconfig", cluster.kubeconfig, "auth", "can-i", verb, resource, "-n", target,
               f"--as=system:serviceaccount:{namespace}:{FULLNAME}", check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), (done.stdout, done.stderr)


def a_session_that_ran(cluster: Cluster, namespace: str) -> client.V1Job:
    """A finished controller Job of this namespace: an earlier test's, or one run here
    from the CronJob when this test runs alone (an empty backlog still runs a session)."""
    done = [job for job in controller_jobs(cluster, namespace) if finished(job)]
    return done[0] if done else session_from_cronjob(cluster, namespace, "audit")


def test_password_only_in_the_secret(cluster: Cluster, namespace: str, installed: dict):
    session = a_session_that_ran(cluster, namespace)
    serialize = client.ApiClient().sanitize_for_serialization
    cronjob = client.BatchV1Api().read_namespaced_cron_job(FULLNAME, namespace)
    pods = cluster.core.list_namespaced_pod(namespace).items
    objects = [cronjob, *pods, *cluster.batch.list_namespaced_job(namespace).items]
    # the controller's own pod (its env names the Secret) is among what is searched
    assert any((p.metadata.labels or {}).get("job-name") == session.metadata.name for p in pods), [
        p.metadata.name for p in pods]
    for obj in objects:
        assert installed["password"] not in json.dumps(serialize(obj)), obj.metadata.name


def test_rendered_chart_and_manifests_accepted_by_the_apiserver(cluster: Cluster, namespace: str, tmp_path):
    rendered = run(helm(), "template", "dry", str(CHART), "--namespace", namespace,
                   "--set-string", "database.url=postgresql://u:p@db/x", "--set-string", "database.existingSecret=")
    (tmp_path / "chart.yaml").write_text(rendered.stdout)
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "apply", "--dry-run=server", "--validate=strict",
        "-n", namespace, "-f", str(tmp_path / "chart.yaml"))
    manifests = Path(__file__).resolve().parents[2] / "manifests"
    kustomized = run(kubectl(), "kustomize", str(manifests)).stdout.replace("namespace: batchdrain",
                                                                           f"namespace: {namespace}")
    (tmp_path / "manifests.yaml").write_text(kustomized)
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "apply", "--dry-run=server", "--validate=strict",
        "-f", str(tmp_path / "manifests.yaml"))


def test_kubectl_plugin_drives_a_session(cluster: Cluster, namespace: str, installed: dict):
    """`kubectl batchdrain ...` finds the installed kubectl-batchdrain entry point on PATH."""
    plugin = Path(sys.executable).parent / "kubectl-batchdrain"
    if not plugin.is_file():
        pytest.fail(f"{plugin} missing: install the package (pip install -e .)", pytrace=False)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
           "PATH": f"{plugin.parent}:{os.environ['PATH']}", "KUBECONFIG": cluster.kubeconfig}
    listed = run(kubectl(), "plugin", "list", env=env, check=False)
    assert str(plugin) in listed.stdout, listed.stdout + listed.stderr
    done = run(kubectl(), "batchdrain", "runs", "--database-url", installed["db_url"], env=env)
    assert "scheduled" in done.stdout and "adhoc" in done.stdout
    sessions = run(kubectl(), "batchdrain", "sessions", "list", "--database-url", installed["db_url"], env=env)
    assert "batch-drain-" in sessions.stdout


def test_no_artefact_of_a_session_holds_the_database_password(cluster: Cluster, namespace: str,
                                                               postgres: PostgresServer, tmp_path: Path):
    """Issue 6.5: grep everything a Kubernetes session leaves for the database password."""
    import socket
    import urllib.request

    password = postgres.password
    assert password
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE secrets_check")
    db_url = postgres.url.rsplit("/", 1)[0] + "/secrets_check"
    assert password in db_url  # the controller really is given the password
    secret = "secrets-check-db"
    cluster.core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret), string_data={"database-url": db_url}))
    batchdrain("db", "upgrade", "--database-url", db_url)
    batchdrain("enqueue", "--database-url", db_url, "--run-id", "secrets", "--phase-id", "ok", "--",
               "python3", "-c", "import os, time; time.sleep(4); print('url set:', bool(os.environ['DATABASE_URL']))")
    batchdrain("enqueue", "--database-url", db_url, "--run-id", "secrets", "--phase-id", "fails", "--",
               "python3", "-c", "import os, sys, time; time.sleep(4); "
               "sys.exit('cannot connect to ' + os.environ['DATABASE_URL'].split('@')[-1])")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_store = tmp_path / "logs"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")}, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", db_url, "--executor", "kubernetes",
         "--kubeconfig", cluster.kubeconfig, "--namespace", namespace, "--default-image", IMAGE,
         "--image-pull-policy", "IfNotPresent", "--database-url-secret", secret, "--log-store", str(log_store),
         "--metrics-port", str(port), "--parallelism", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    serialize = client.ApiClient().sanitize_for_serialization
    artefacts: dict[str, str] = {}
    scrapes: list[str] = []  # every read is kept: the last one may come as the session ends, empty
    try:
        while proc.poll() is None:  # while the session runs: its metrics, Jobs and pods
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    scrapes.append(answer.read().decode())
            except OSError:
                pass  # not serving yet, or already gone
            selector = "app.kubernetes.io/managed-by=batchdrain"
            for kind, objs in (("Job", cluster.batch.list_namespaced_job(namespace, label_selector=selector).items),
                               ("Pod", cluster.core.list_namespaced_pod(namespace, label_selector=selector).items)):
                for obj in objs:
                    artefacts[f"{kind}/{obj.metadata.name}"] = json.dumps(serialize(obj))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if scrapes:
        artefacts["metrics"] = "\n".join(scrapes)
    assert proc.returncode == 0, err
    artefacts["cli stdout"], artefacts["cli stderr"] = out, err
    rows = attempts_of(db_url, "secrets")
    assert {r.phase_id: r.failure_class for r in rows} == {"ok": "succeeded", "fails": "exit_code"}
    session_id = rows[0].session_id
    for fmt in ("json", "md", "html"):
        artefacts[f"report.{fmt}"] = batchdrain("report", session_id, "--format", fmt,
                                                "--database-url", db_url).stdout
    for path in log_store.rglob("*"):
        if path.is_file():
            artefacts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    with psycopg.connect(db_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        for table in tables:
            dump = conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
            artefacts[f"table {table}"] = "\n".join(r[0] for r in dump)
    events = cluster.core.list_namespaced_event(namespace).items
    artefacts["events"] = json.dumps([serialize(e) for e in events])
    # everything was collected: metrics, Job and pod specs, stored logs, reports, every table
    assert "metrics" in artefacts and "batchdrain_attempts_total" in artefacts["metrics"]
    assert any(k.startswith("Job/") for k in artefacts) and any(k.startswith("Pod/") for k in artefacts)
    assert sum(1 for k in artefacts if k.endswith(".log")) >= 2 and "table attempts" in artefacts
    assert "secretKeyRef" in next(v for k, v in artefacts.items() if k.startswith("Pod/"))
    assert "cannot connect to" in artefacts["report.json"]
    leaked = [name for name, text in artefacts.items() if password in text]
    assert leaked == [], f"the database password appears in: {leaked}"
