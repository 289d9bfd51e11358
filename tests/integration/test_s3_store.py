"""The ``s3://`` log store against a real S3 server (SeaweedFS, ``tests/s3server.py``).

Each test gets its own bucket. Logs are written through the real sink, read back
through it and through a plain botocore client, so what is checked is what the server
holds: segments while a log is open, one composed object once closed, the bytes and
their sha256 exactly what was written, nothing twice after a resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from batchdrain.logstore import CHUNK, LogStoreError, S3LogSink, probe_store, stored_content
from batchdrain.logstore.s3client import MIN_PART
from tests.s3server import S3Server

PART = MIN_PART  # the smallest the sink allows: several segments in a few MiB


def _sink(store: tuple[str, dict[str, str]], **options: str) -> S3LogSink:
    url, base = store
    return S3LogSink(url, options={**base, "part_size": str(PART), **options}, retry_attempts=3,
                     retry_max_seconds=10)


def _client(server: S3Server) -> Any:
    return botocore.session.get_session().create_client("s3", endpoint_url=server.endpoint,
                                                        config=Config(retries={"max_attempts": 1}))


def _data(size: int, seed: bytes = b"x") -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


def _keys(server: S3Server, sink: S3LogSink) -> list[str]:
    """The keys under the test's prefix, without it."""
    client = _client(server)
    try:
        found = client.list_objects_v2(Bucket=sink.bucket, Prefix=sink.prefix + "/").get("Contents") or []
    finally:
        client.close()
    return [o["Key"].removeprefix(sink.prefix + "/") for o in found]


def test_a_log_is_stored_while_written_in_bounded_memory_then_composed(s3_store, s3_server):
    sink = _sink(s3_store)
    data = _data(3 * PART + 12345)
    writer = sink.open("s/runs/r/p.attempt-1.log", stream="combined")
    most = 0
    seen_running = b""
    for i, chunk in enumerate(_chunks(data)):
        writer.write(chunk)
        most = max(most, len(writer._buffer))
        if i == 100:  # 6.4 MiB in: one sealed segment and the open one, readable as the log so far
            writer.flush()  # what the sink's flusher does every flush_seconds
            seen_running = b"".join(sink.read(sink.url_for("s/runs/r/p.attempt-1.log")))
            assert sink.tail(sink.url_for("s/runs/r/p.attempt-1.log"), 10) == data[:101 * CHUNK][-10:]
    assert seen_running == data[:101 * CHUNK]
    assert most <= PART + CHUNK  # never more than one segment in memory
    assert any(".parts/" in k for k in _keys(s3_server, sink))
    pointer = writer.close()
    assert pointer.size_bytes == len(data)
    assert pointer.sha256 == hashlib.sha256(data).hexdigest()
    assert pointer.url == sink.url_for("s/runs/r/p.attempt-1.log")
    assert _keys(s3_server, sink) == ["s/runs/r/p.attempt-1.log"]  # segments removed
    client = _client(s3_server)
    try:
        body = client.get_object(Bucket=sink.bucket, Key=f"{sink.prefix}/s/runs/r/p.attempt-1.log")["Body"].read()
    finally:
        client.close()
    assert hashlib.sha256(body).hexdigest() == pointer.sha256


def test_a_resumed_log_loses_and_repeats_no_byte(s3_store, s3_server):
    """A controller dies mid-log (its writer never closed); the next one resumes after the stored bytes."""
    sink = _sink(s3_store)
    key = "s/runs/r/p.attempt-2.stdout.log"
    data = _data(2 * PART + 777_777, seed=b"resume")
    cut = PART + 300_001
    first = sink.open(key, stream="stdout")
    for chunk in _chunks(data[:cut]):
        first.write(chunk)
    first.flush()
    first.write(data[cut:cut + 5000])  # in memory only when the controller is killed: lost, sent again
    del first  # killed: no close, no compose
    stored = b"".join(sink.read(sink.url_for(key)))
    assert data.startswith(stored) and cut <= len(stored) <= cut + 5000  # a prefix, segments included
    second = sink.open(key, stream="stdout", resume=True)
    assert second.size == len(stored)
    for chunk in _chunks(data[len(stored):]):
        second.write(chunk)
    pointer = second.close()
    assert b"".join(sink.read(pointer.url)) == data
    assert pointer.sha256 == hashlib.sha256(data).hexdigest() and pointer.size_bytes == len(data)
    # Resumed once more after it was composed (a controller killed between close and record).
    third = sink.open(key, stream="stdout", resume=True)
    third.write(b"tail\n")
    again = third.close()
    assert b"".join(sink.read(again.url)) == data + b"tail\n"
    assert again.sha256 == hashlib.sha256(data + b"tail\n").hexdigest()
    assert [k for k in _keys(s3_server, sink) if key in k] == [key]


def test_stored_content_counts_phase_bytes_of_a_running_log(s3_store):
    sink = _sink(s3_store)
    header = b"[batchdrain] identity\n[batchdrain] ================================\n"
    writer = sink.open("s/runs/r/h.attempt-1.log", stream="combined")
    writer.write(header)
    writer.write(b"a" * 1000)
    writer.flush()
    assert stored_content(sink, "s/runs/r/h.attempt-1.log") == 1000
    writer.close()
    assert stored_content(sink, "s/runs/r/h.attempt-1.log") == 1000
    assert stored_content(sink, "s/runs/r/none.attempt-1.log") is None


def test_reports_are_stored_whole_or_not_at_all(s3_store, s3_server):
    sink = _sink(s3_store)
    big = _data(2 * PART + 5, seed=b"report")
    url = sink.put_stream("s/session.attempts.jsonl", _chunks(big))
    assert b"".join(sink.read(url)) == big

    def broken() -> Iterator[bytes]:
        yield from _chunks(big[: PART + CHUNK])
        raise RuntimeError("the report's rows failed half-way")

    with pytest.raises(RuntimeError):
        sink.put_stream("s/session.md", broken())
    with pytest.raises(FileNotFoundError):
        b"".join(sink.read(sink.url_for("s/session.md")))
    client = _client(s3_server)
    try:
        uploads = client.list_multipart_uploads(Bucket=sink.bucket, Prefix=sink.prefix + "/").get("Uploads")
        assert not uploads  # aborted
    finally:
        client.close()


def test_probe_writes_reads_and_deletes(s3_store, s3_server):
    sink = _sink(s3_store)
    assert "probe" in probe_store(sink)
    assert _keys(s3_server, sink) == []


def test_the_server_checks_each_segments_sha256(s3_store, s3_server):
    """What makes the sink's ``x-amz-checksum-sha256`` a check: a wrong one is refused."""
    client = _client(s3_server)
    bucket = s3_store[0].split("/")[2]
    assert bucket == s3_server.bucket
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    try:
        with pytest.raises(ClientError):
            client.put_object(Bucket=bucket, Key="x", Body=b"these bytes", ChecksumSHA256=wrong)
    finally:
        client.close()


def test_a_store_out_of_reach_is_a_store_error_after_the_retries(s3_server, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = S3LogSink("s3://nowhere/logs", options={"endpoint_url": f"http://127.0.0.1:{port}",
                                                   "connect_timeout": "1"}, retry_attempts=3, retry_max_seconds=5)
    with pytest.raises(LogStoreError) as caught:
        probe_store(sink)
    assert "s3://nowhere/logs" in str(caught.value) and "\n" not in str(caught.value)
    assert sink.client.retries == 2  # the policy's: three tries
    with pytest.raises(LogStoreError):  # down now: one try per call, not the budget again
        sink.tail(sink.url_for("s/runs/r/p.attempt-1.log"), 100)
    assert sink.client.retries == 2 and sink.client.down


def test_credentials_come_from_the_environment(s3_store, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + os.environ["AWS_SECRET_ACCESS_KEY"])
    sink = _sink(s3_store)
    with pytest.raises(LogStoreError) as caught:
        probe_store(sink)
    assert "SignatureDoesNotMatch" in str(caught.value) or "Access" in str(caught.value)
    assert sink.client.retries == 0  # a 403 is not retried


def test_every_read_path_works_on_s3(workdir, capsys, s3_store, tmp_path):
    """drain -> logs, report (with the identity check), sessions watch (the running log's last line)."""
    import time

    import yaml

    from batchdrain.db import Database
    from tests.integration.helpers import attempts, cli, controller_process

    store, options = s3_store
    url = f"sqlite:///{workdir / 'b.db'}"
    release = workdir / "release"
    waiter = (f"import pathlib, time; print('working on it', flush=True); p = pathlib.Path({str(release)!r}); "
              "deadline = time.monotonic() + 120\nwhile not p.exists() and time.monotonic() < deadline: "
              "time.sleep(0.05)\nprint('done')")
    rows = [{"run_id": "r", "phase_id": "bytes", "command": ["python3", "-c",
                                                            "import sys; sys.stdout.buffer.write(bytes(range(256)))"]},
            {"run_id": "r", "phase_id": "waits", "command": ["python3", "-c", waiter]}]
    (workdir / "b.yaml").write_text(yaml.safe_dump(rows))
    assert cli(capsys, "import", str(workdir / "b.yaml"), "--database-url", url)[0] == 0
    flags = ["--database-url", url, "--log-store", store, "--log-store-option",
             f"endpoint_url={options['endpoint_url']}", "--log-store-option", "flush_seconds=0.2"]
    controller = controller_process("drain", "--executor", "local", "--parallelism", "2", *flags, cwd=workdir)
    try:
        db = Database(url)
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "working on it" not in line:
            running = [a for a in db.attempts() if a.phase_id == "waits" and a.finished_at is None]
            if running:
                code, out, err = cli(capsys, "sessions", "watch", running[0].session_id, "--timeout", "0",
                                     *flags[:2], *flags[2:])
                assert code == 0, err
                line = out
            time.sleep(0.1)
        db.dispose()
        assert "working on it" in line  # the live view read the running s3:// log's last line
    finally:
        release.touch()
        _, err_b = controller.communicate(timeout=120)
    assert controller.returncode == 0, err_b.decode()
    [done] = [a for a in attempts(url) if a.phase_id == "bytes"]
    logs = controller_process("logs", done.session_id, "bytes", "--stream", "stdout", *flags, cwd=workdir)
    printed, err_l = logs.communicate(timeout=120)
    assert logs.returncode == 0, err_l.decode()
    stdout = next(p for p in done.logs if p.stream == "stdout")
    assert printed.endswith(bytes(range(256))) and hashlib.sha256(printed).hexdigest() == stdout.sha256
    code, report, err = cli(capsys, "report", done.session_id, "--database-url", url, "--format", "json")
    assert code == 0, err
    rows = json.loads(report)["attempts"]
    assert len(rows) == 2 and {r["identity_check"] for r in rows} == {"ok"}  # headers read back from S3
    for pointer in done.logs:
        assert pointer.url.startswith(store + "/")
