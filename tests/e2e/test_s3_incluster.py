"""In-cluster sessions with logs in S3 (issue 17.6): the chart's CronJob writing to a real
S3 server, a phase pod deleted mid-run and the controller SIGKILLed mid-run.

The S3 server (SeaweedFS, ``tests/s3server.py``) runs on this machine on the node's
address, where pods reach it, with static credentials the chart gives the controller
from a Secret; Postgres is the in-cluster tests' (``test_incluster``). Every log is read
back from the bucket and checked byte for byte: its sha256 is the pointer's, and the
phase's numbered lines are each there exactly once, in order, none missing (a deleted
pod's log: a prefix of them).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from kubernetes import client

from batchdrain.db import AttemptRecord
from batchdrain.logstore import HEADER_END, S3LogSink
from tests.e2e.conftest import IMAGE, Cluster, wait_for
from tests.e2e.test_incluster import (  # noqa: F401  (postgres is a fixture)
    attempts_of,
    batchdrain,
    controller_jobs,
    finished,
    helm,
    host_address,
    kubectl,
    postgres,
    run,
)
from tests.pgserver import PostgresServer
from tests.s3server import S3Server, start_s3

CHART = __import__("pathlib").Path(__file__).resolve().parents[2] / "helm" / "batchdrain"
RELEASE = "e2e-s3"
FULLNAME = f"{RELEASE}-batchdrain"


def lines_phase(count: int, pause: float) -> list[str]:
    code = ("import sys, time\n"
            f"for i in range({count}):\n"
            "    sys.stdout.write(f'line {i:05d} ' + 'x' * 80 + '\\n'); sys.stdout.flush()\n"
            f"    time.sleep({pause})\n")
    return ["python3", "-c", code]


def expected(count: int) -> bytes:
    return b"".join(f"line {i:05d} {'x' * 80}\n".encode() for i in range(count))


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> Iterator[S3Server]:
    server = start_s3(host=host_address(cluster))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def installed(cluster: Cluster, namespace: str, postgres: PostgresServer, s3: S3Server) -> Iterator[dict]:  # noqa: F811
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE backlog_s3")
    db_url = postgres.url.rsplit("/", 1)[0] + "/backlog_s3"
    cluster.core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="drain-s3"),
        string_data={"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}))
    store = f"s3://{s3.bucket}/{namespace}"
    repository, _, tag = IMAGE.partition(":")
    sets = {
        "image.repository": repository, "image.tag": tag or "latest", "image.pullPolicy": "IfNotPresent",
        "phases.image.repository": repository, "phases.image.tag": tag or "latest",
        "phases.image.pullPolicy": "IfNotPresent",
        "cronjob.schedule": "* * * * *", "database.existingSecret": "",
        "database.url": db_url, "s3.url": store, "s3.endpoint": s3.endpoint,
        "s3.credentials.existingSecret": "drain-s3", "s3.options.flush_seconds": "1",
    }
    args = [arg for key, value in sets.items() for arg in ("--set-string", f"{key}={value}")]
    # No retry backoff (default 60 s): the deleted pod's phase runs again in the next session.
    args += ["--set", "drain.parallelism=3", "--set", "drain.leaseSeconds=15", "--set", "s3.enabled=true",
             "--set", "cronjob.suspend=true", "--set", "drain.retryDelaySeconds=0"]
    run(helm(), "install", RELEASE, str(CHART), "--namespace", namespace, "--kubeconfig", cluster.kubeconfig,
        "--wait", "--timeout", "2m", *args)
    for key, value in s3.env().items():
        os.environ.setdefault(key, value)
    sink = S3LogSink(store, options={"endpoint_url": s3.endpoint})
    try:
        yield {"db_url": db_url, "sink": sink, "store": store}
    finally:
        run(helm(), "uninstall", RELEASE, "--namespace", namespace, "--kubeconfig", cluster.kubeconfig, check=False)


def enqueue(db_url: str, run_id: str, count: int, *, lines: int, pause: float) -> None:
    for i in range(count):
        batchdrain("enqueue", "--database-url", db_url, "--run-id", run_id, "--phase-id", f"p{i}", "--",
                   *lines_phase(lines, pause))


def stored_content(sink: S3LogSink, row: AttemptRecord) -> bytes:
    (pointer,) = [p for p in row.logs if p.stream in ("stdout", "combined")]
    assert pointer.url.startswith(sink.location() + "/")
    data = b"".join(sink.read(pointer.url))
    assert hashlib.sha256(data).hexdigest() == pointer.sha256 and len(data) == pointer.size_bytes
    head, found, content = data.partition(HEADER_END)
    assert found and f"[batchdrain] phase: {row.phase_id}\n".encode() in head, head
    return content


def suspend(cluster: Cluster, namespace: str) -> None:
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "patch", "cronjob", FULLNAME,
        "-p", '{"spec": {"suspend": true}}')
    wait_for(lambda: all(finished(j) for j in controller_jobs(cluster, namespace)), "scheduled sessions to end",
             timeout=300, interval=2)


def manual_session(cluster: Cluster, namespace: str) -> str:
    name = f"manual-{uuid.uuid4().hex[:5]}"
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "create", "job",
        f"--from=cronjob/{FULLNAME}", name)
    return name


def test_cronjob_session_stores_every_log_in_s3_byte_exact(cluster: Cluster, namespace: str, installed: dict):
    enqueue(installed["db_url"], "scheduled", 3, lines=2000, pause=0)
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "patch", "cronjob", FULLNAME,
        "-p", '{"spec": {"suspend": false}}')  # only now: one session finds all three phases
    wait_for(lambda: any(j.metadata.owner_references and finished(j) for j in controller_jobs(cluster, namespace)),
             "a CronJob session to run and finish", timeout=300, interval=2)
    suspend(cluster, namespace)
    rows = attempts_of(installed["db_url"], "scheduled")
    assert len(rows) == 3 and {r.failure_class for r in rows} == {"succeeded"}, rows
    for row in rows:
        assert stored_content(installed["sink"], row) == expected(2000)
    (session_id,) = {r.session_id for r in rows}
    report = b"".join(installed["sink"].read(installed["sink"].url_for(f"{session_id}/session.json")))
    assert json.loads(report)["leaks"] == []


def test_pod_deleted_and_controller_killed_mid_run_lose_and_repeat_nothing(cluster: Cluster, namespace: str,
                                                                           installed: dict):
    db_url, sink = installed["db_url"], installed["sink"]
    count = 400  # ~40 s of output per phase, 0.1 s a line
    enqueue(db_url, "chaos", 3, lines=count, pause=0.1)
    first = manual_session(cluster, namespace)
    running = wait_for(lambda: (r := [a for a in attempts_of(db_url, "chaos") if a.pod_names and a.node])
                       and len(r) == 3 and r, "three phase pods to run", timeout=240, interval=1)
    # Bytes in the bucket already (segments of running logs): the kill below leaves some behind.
    wait_for(lambda: all(len(stored_or_empty(sink, a)) > 2000 for a in running), "logs stored while running",
             timeout=120, interval=1)
    victim = running[0]
    cluster.core.delete_namespaced_pod(victim.pod_names[-1], namespace)
    controller = wait_for(lambda: next((p.metadata.name for p in cluster.core.list_namespaced_pod(
        namespace, label_selector=f"job-name={first}").items), None), "the controller pod")
    run(kubectl(), "--kubeconfig", cluster.kubeconfig, "-n", namespace, "delete", "pod", controller,
        "--grace-period=0", "--force")  # SIGKILL: no grace, nothing closed
    # The next session adopts the killed one's attempts (once its 15 s lease runs out) and
    # resumes their logs from the bucket; the deleted pod's phase runs again in a later one.
    rows: list[AttemptRecord] = []
    for _ in range(6):  # a session that finds the lease still running only waits: the next one adopts
        name = manual_session(cluster, namespace)
        wait_for(lambda n=name: finished(cluster.batch.read_namespaced_job(n, namespace)), f"session {name}",
                 timeout=600, interval=3)
        rows = attempts_of(db_url, "chaos")
        if {a.phase_id for a in rows if a.failure_class == "succeeded"} == {"p0", "p1", "p2"}:
            break
    assert all(a.finished_at for a in rows), rows
    assert {a.phase_id for a in rows if a.failure_class == "succeeded"} == {"p0", "p1", "p2"}, rows
    for row in rows:
        content = stored_content(sink, row)
        if row.failure_class == "succeeded":
            assert content == expected(count), (row.phase_id, row.attempt, len(content))
        else:  # the deleted pod's attempt: what it printed until then, each line once
            assert expected(count).startswith(content) and content, (row.phase_id, row.failure_class)
    adopted = [r for r in rows if r.session_id != r.identity_session_id or (r.raw_status or {}).get(
        "adopted_by_session")]
    assert adopted, "the second session adopted the killed session's attempts"


def stored_or_empty(sink: S3LogSink, row: AttemptRecord) -> bytes:
    from batchdrain.logstore import log_key

    for stream in ("stdout", "combined"):
        key = log_key(row.identity_session_id, row.run_id, row.phase_id, row.attempt, stream)
        try:
            return b"".join(sink.read(sink.url_for(key)))
        except FileNotFoundError:
            continue
    return b""
