"""A log store that fails under a running attempt: the controller's failure, not the phase's.

The Kubernetes executor against the fake seam, with a sink whose writes start failing
mid-log (as an S3 endpoint that went away, past the retries): the attempt is left
running for the next session (its Job stays, nothing is charged) and the result halts
the session. Also the ``s3://`` options' parsing and the retry classification, which
need no server.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from batchdrain.domain import BadInput, FailureClass, LogPointer
from batchdrain.executors.base import StopSignal
from batchdrain.logstore import LogSink, LogStoreError, open_log_sink
from batchdrain.logstore.s3client import S3Options, retriable
from tests.unit.fake_kube import Exit, Gate, Out, Schedule, Start
from tests.unit.test_kube_executor import Harness, harness, launch, script  # noqa: F401


class _BreakingWriter:
    def __init__(self, inner: Any, broken: threading.Event) -> None:
        self.inner = inner
        self.broken = broken

    @property
    def size(self) -> int:
        return int(self.inner.size)

    @property
    def stalled(self) -> bool:
        return False

    def write(self, chunk: bytes) -> None:
        if self.broken.is_set():
            raise LogStoreError(errno.EIO, "storing the log s3://b/x: connection refused (after 6 tries)")
        self.inner.write(chunk)

    def close(self) -> LogPointer:
        if self.broken.is_set():
            raise LogStoreError(errno.EIO, "storing the log s3://b/x: connection refused (after 6 tries)")
        pointer: LogPointer = self.inner.close()
        return pointer


class _BreakingSink:
    def __init__(self, inner: LogSink) -> None:
        self.inner = inner
        self.broken = threading.Event()

    def open(self, key: str, *, stream: str, resume: bool = False) -> _BreakingWriter:
        return _BreakingWriter(self.inner.open(key, stream=stream, resume=resume), self.broken)

    def put(self, key: str, data: bytes) -> str:
        return self.inner.put(key, data)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        return self.inner.put_stream(key, chunks)

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key)

    def read(self, url: str) -> Iterator[bytes]:
        return self.inner.read(url)

    def tail(self, url: str, size: int) -> bytes | None:
        return self.inner.tail(url, size)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def location(self) -> str:
        return self.inner.location()


def test_a_store_failing_mid_log_leaves_the_attempt_for_adoption_and_halts(
    harness: Callable[..., Harness],  # noqa: F811
) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"stored line\n"), Gate(gate), Out(b"never stored\n"), Exit(0)))
    sink = _BreakingSink(h.sink)
    h.sink = sink  # type: ignore[assignment]
    ex = h.executor()
    worker, box = h.start(ex, launch(), StopSignal())
    assert _wait(lambda: any(b"stored line" in p.read_bytes() for p in (h.sink.inner.root).rglob("*.log")))
    sink.broken.set()
    gate.set()
    worker.join(30)
    assert not worker.is_alive()
    [result] = box
    assert result.left_running and result.halt and "log store failed" in result.halt
    assert result.failure_class is FailureClass.API_ERROR and not result.charged
    assert h.fake.deleted_jobs == []  # the Job stays: the next session adopts it and resumes its logs
    assert ex.left_for_adoption() == [f"job/{result.job_name}"]


def _wait(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"endpointurl": "x"}, "unknown --log-store-option 'endpointurl'"),
    ({"part_size": "1024"}, "at least 5242880"),
    ({"part_size": "lots"}, "not a valid value"),
    ({"anon": "perhaps"}, "not a valid value"),
    ({"addressing_style": "sideways"}, "auto, path or virtual"),
    ({"flush_seconds": "-1"}, "flush_seconds"),
])
def test_s3_options_refuse_bad_input_in_one_line(raw: dict[str, str], fragment: str) -> None:
    with pytest.raises(BadInput) as caught:
        S3Options.parse(raw, retry_attempts=3, retry_max_seconds=5)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_s3_options_parse_what_they_know() -> None:
    options = S3Options.parse({"endpoint-url": "http://127.0.0.1:1", "part_size": str(6 << 20), "anon": "yes",
                               "flush_seconds": "0.5"}, retry_attempts=4, retry_max_seconds=9)
    assert (options.endpoint_url, options.part_size, options.anon, options.flush_seconds) == (
        "http://127.0.0.1:1", 6 << 20, True, 0.5)
    assert (options.retry_attempts, options.retry_max_seconds) == (4, 9)


def test_options_are_for_s3_only() -> None:
    with pytest.raises(BadInput):
        open_log_sink("/tmp/logs", options={"endpoint_url": "x"})


def test_what_is_retried() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def client_error(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert retriable(EndpointConnectionError(endpoint_url="http://x"))
    assert retriable(ReadTimeoutError(endpoint_url="http://x"))
    assert retriable(client_error(503, "SlowDown"))
    assert retriable(client_error(500, "InternalError"))
    assert retriable(client_error(429, "TooManyRequests"))
    assert not retriable(client_error(403, "AccessDenied"))
    assert not retriable(client_error(404, "NoSuchBucket"))
    assert not retriable(client_error(400, "BadDigest"))
    assert not retriable(ValueError("a bug"))
