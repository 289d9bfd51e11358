"""KubernetesExecutor against the in-memory FakeKube, behind the real retry policy.

These show the executor's logic (watches, logs, classification, cleanup, adoption);
they are not proof that Kubernetes behaves like the fake: the e2e tests are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from batchdrain.domain import AttemptProgress, AttemptResult, FailureClass, LogMode, PhaseSpec
from batchdrain.executors.base import AttemptLaunch, OrphanAttempt, StopSignal
from batchdrain.executors.kubernetes import KubernetesExecutor, pacing
from batchdrain.executors.kubernetes import logs as logs_module
from batchdrain.executors.kubernetes.cursor import LineCursor
from batchdrain.executors.kubernetes.logs import KubeletErrorBody, StoredLog
from batchdrain.executors.kubernetes.pacing import Backoff, RateLimiter
from batchdrain.identity import Identity
from batchdrain.jobspec import JobSpecBuilder
from batchdrain.kube import Forbidden, Invalid, KubeError, RetryingKubeApi, Unreachable
from batchdrain.logstore import FileLogSink, LogWriter, legacy_log_key
from batchdrain.settings import Settings
from tests.unit.fake_kube import (
    Deadline,
    DeletePod,
    Err,
    Evict,
    Exit,
    FakeKube,
    Gate,
    Hang,
    NodeLost,
    Out,
    Schedule,
    Start,
    Step,
    Unschedulable,
    Waiting,
    server_error,
)

SESSION = "batch-drain-20250101-120000"
DB_URL = "postgresql://app:pw@db/batch"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "job_create_rate": 1000.0,
        "retry_attempts": 6,
        "retry_max_seconds": 2.0,
        "scheduling_timeout_seconds": 60.0,
        "start_timeout_seconds": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


def launch(
    phase: str = "p1", *, attempt: int = 1, session: str = SESSION, memory: str | None = None, timeout: float = 60.0
) -> AttemptLaunch:
    identity = Identity(session, "run-1", phase, attempt, DB_URL, None)
    spec = PhaseSpec(command=("python", "job.py"), memory=memory)
    return AttemptLaunch(
        identity=identity,
        spec=spec,
        command=spec.command,
        env=tuple(identity.env(settings()).items()),
        timeout_seconds=timeout,
        image="python:3.11-slim",
    )


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        script: Callable[[dict[str, Any]], tuple[Step, ...]] | None = None,
        *,
        split: bool = True,
        version: tuple[int, int] = (1, 33),
        **overrides: Any,
    ) -> None:
        self.fake = FakeKube(split_streams=split, version=version)
        if script is not None:
            self.fake.script_for = script
        self.settings = settings(**overrides)
        self.api = RetryingKubeApi(self.fake, self.settings)
        self.sink = FileLogSink(tmp_path / "logs")
        self.updates: list[AttemptProgress] = []
        self.executors: list[KubernetesExecutor] = []

    def executor(self, session: str = SESSION) -> KubernetesExecutor:
        ex = KubernetesExecutor(self.api, self.settings, tick_seconds=0.02, job_condition_grace_seconds=0.5)
        ex.begin(session_id=session, sink=self.sink)
        self.executors.append(ex)
        return ex

    def run(self, ex: KubernetesExecutor, what: AttemptLaunch, stop: StopSignal | None = None) -> AttemptResult:
        return ex.execute(what, stop=stop or StopSignal(), on_update=self.updates.append)

    def start(self, ex: KubernetesExecutor, what: AttemptLaunch,
              stop: StopSignal | None = None) -> tuple[threading.Thread, list[AttemptResult]]:
        """Run an attempt on a thread of its own; its result lands in the returned list."""
        box: list[AttemptResult] = []
        worker = threading.Thread(target=lambda: box.append(self.run(ex, what, stop)))
        worker.start()
        return worker, box

    def close(self) -> None:
        for ex in self.executors:
            ex.end()
        self.fake.wait_idle()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*args: Any, **kwargs: Any) -> Harness:
        h = Harness(tmp_path, *args, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def script(*steps: Step) -> Callable[[dict[str, Any]], tuple[Step, ...]]:
    return lambda _job: steps


def body(pointer_url: str) -> bytes:
    """A stored log without its identity header."""
    data = Path(pointer_url).read_bytes()
    marker = b"[batchdrain] ================================\n"
    assert data.startswith(b"[batchdrain] ===== ENVIRONMENT IDENTITY =====\n")
    return data[data.index(marker) + len(marker) :]


def logs(result: AttemptResult) -> dict[str, bytes]:
    return {p.stream: body(p.url) for p in result.logs}


# -- the happy path ----------------------------------------------------------------------


def test_success_split_streams_header_pointers_and_cleanup(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule("node-7"), Start(), Out(b"hello\n"), Err(b"warn: x\n"), Out(b"bye\n"), Exit(0)))
    ex = h.executor()
    result = h.run(ex, launch())
    assert result.failure_class is FailureClass.SUCCEEDED, result
    assert result.exit_code == 0 and result.message == "exit code 0"
    assert result.log_mode is LogMode.SPLIT and ex.describe()["log_mode"] == "split"
    assert logs(result) == {"stdout": b"hello\nbye\n", "stderr": b"warn: x\n"}
    for pointer in result.logs:
        data = Path(pointer.url).read_bytes()
        assert pointer.size_bytes == len(data) and pointer.sha256 == hashlib.sha256(data).hexdigest()
        header = data.decode()
        for expected in (
            f"session: {SESSION}",
            "node: node-7",
            f"job: {result.job_name}",
            "image_digest: sha256:" + "ab" * 32,
            "namespace: bd-test",
            "DATABASE_URL: postgresql://app:***@db/batch",
        ):
            assert expected in header
        assert ":pw@" not in header
    assert result.node == "node-7" and result.pod_uid and result.pod_names
    assert result.image_digest == "sha256:" + "ab" * 32
    assert result.started_at and result.finished_at and result.container_seconds is not None
    assert result.total_seconds is not None and result.created_at
    # cleanup: Job deleted, our finalizer removed, so nothing of the session is left
    assert h.fake.deleted_jobs == [result.job_name]
    assert h.fake.finalizers_removed == result.pod_names
    assert not h.fake.pods and not h.fake.jobs
    assert ex.end() == []


# What a phase writes in CRI records (one ``Out`` is one record; without a newline it is
# a P record): a long stdout line cut into records with stderr lines between them, a
# stderr line looking like a kubelet timestamp, untimed partial tails on both streams.
INTERLEAVED: tuple[Step, ...] = (
    Out(b"A" * 16384), Err(b"err-1\n"), Out(b"A" * 3616 + b"B" * 100 + b"\n"), Out(b"\xff\xfe " * 9),
    Err(b"2025-01-01T12:00:00.5Z looks like a stamp\n"), Out(b"rest\n"), Err(b"tail-err"), Out(b"tail-out"),
)


@pytest.mark.parametrize("split", [True, False], ids=["split", "combined"])
def test_logs_are_byte_exact_however_the_streams_interleave(harness: Callable[..., Harness], split: bool) -> None:
    """Failed before (split): a timestamp inside the long line, stderr lines lost, tails lost."""
    h = harness(script(Schedule(), Start(), *INTERLEAVED, Exit(0)), split=split)
    h.fake.log_chunk = 5
    result = h.run(h.executor(), launch())
    assert result.succeeded, result
    steps = [s for s in INTERLEAVED if isinstance(s, Out)]
    if split:
        assert logs(result) == {name: b"".join(s.data for s in steps if s.stream == name)
                                for name in ("stdout", "stderr")}
    else:  # one log: the records as they came, of either stream
        assert logs(result) == {"combined": b"".join(s.data for s in steps)}
    assert result.raw_status is None or "notes" not in result.raw_status, result.raw_status


def test_job_name_is_reported_before_the_job_exists(harness: Callable[..., Harness]) -> None:
    h = harness()
    ex = h.executor()
    seen: list[tuple[str, int]] = []

    def record(update: AttemptProgress) -> None:
        given = sorted(k for k, v in dataclasses.asdict(update).items() if v is not None)
        seen.append((",".join(given), h.fake.calls["create_job"]))

    result = ex.execute(launch(), stop=StopSignal(), on_update=record)
    assert result.succeeded
    assert seen[0] == ("job_name,namespace", 0)
    assert any(keys.startswith("node,pod_name,pod_uid") for keys, _ in seen)


def test_combined_log_when_the_server_refuses_the_stream_parameter(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Out(b"out\n"), Err(b"err\n"), Exit(0)), split=False)
    ex = h.executor()
    result = h.run(ex, launch())
    assert result.log_mode is LogMode.COMBINED
    assert logs(result) == {"combined": b"out\nerr\n"}
    assert all(r["stream"] is None for r in h.fake.log_requests if not r["pod"].startswith("batchdrain-probe"))


def test_old_servers_get_combined_logs_without_probing(harness: Callable[..., Harness]) -> None:
    h = harness(version=(1, 29))
    ex = h.executor()
    assert ex.log_mode is LogMode.COMBINED
    assert "predates" in ex.describe()["log_mode_reason"]
    assert h.fake.calls["stream_pod_log"] == 0


# -- failure classes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "klass", "code"),
    [
        (
            (Schedule(), Start(), Err(b"Traceback (most recent call last):\n"), Err(b"KeyError: 'x'\n"), Exit(3)),
            FailureClass.EXIT_CODE,
            3,
        ),
        ((Schedule(), Start(), Out(b"allocating\n"), Exit(137, "OOMKilled")), FailureClass.OOM_KILLED, 137),
        ((Schedule(), Start(), Exit(0, "OOMKilled")), FailureClass.OOM_KILLED, 0),
        ((Schedule(), Start(), Out(b"slow\n"), Deadline()), FailureClass.DEADLINE_EXCEEDED, 143),
        ((Schedule(), Start(), Out(b"x\n"), Evict()), FailureClass.EVICTED, 137),
        ((Schedule(), Start(), Out(b"x\n"), DeletePod()), FailureClass.POD_DELETED, 143),
        ((Schedule(), Start(), Out(b"x\n"), NodeLost()), FailureClass.NODE_LOST, None),
        ((Schedule(), Waiting("ErrImagePull", "manifest unknown")), FailureClass.IMAGE_PULL, None),
        ((Schedule(), Waiting("CreateContainerConfigError", 'secret "db" not found')), FailureClass.CONFIG_ERROR, None),
    ],
)
def test_failure_classes(
    harness: Callable[..., Harness], steps: tuple[Step, ...], klass: FailureClass, code: int | None
) -> None:
    h = harness(script(*steps))
    ex = h.executor()
    started = time.monotonic()
    result = h.run(ex, launch())
    assert result.failure_class is klass, result
    assert result.exit_code == code
    assert result.exit_code is not None or result.exit_code_reason
    assert result.message and "unknown error" not in result.message.lower()
    assert result.logs and all(p.size_bytes > 0 for p in result.logs)
    assert time.monotonic() - started < 5  # fail fast: nobody waited for a deadline
    if klass is FailureClass.EXIT_CODE:
        assert result.first_error_line == "KeyError: 'x'"
        assert result.message.endswith("KeyError: 'x'")
    if klass not in (FailureClass.SUCCEEDED, FailureClass.EXIT_CODE):
        assert result.raw_status is not None
    assert h.fake.deleted_jobs == [result.job_name]  # cleaned up whatever the class
    assert not h.fake.pods


def test_never_started_attempts_still_have_a_log_with_the_reason(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Waiting("ImagePullBackOff", "pull access denied")))
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.IMAGE_PULL
    for text in logs(result).values():
        assert b"no output: image could not be pulled: ImagePullBackOff" in text


def test_unschedulable_after_the_scheduling_timeout_with_events(harness: Callable[..., Harness]) -> None:
    h = harness(
        script(Unschedulable("0/3 nodes are available: 3 Insufficient memory.")), scheduling_timeout_seconds=0.3
    )
    started = time.monotonic()
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.UNSCHEDULABLE
    assert 0.3 <= time.monotonic() - started < 5
    assert "Insufficient memory" in result.message and "FailedScheduling" in result.message
    assert h.fake.deleted_jobs == [result.job_name] and not h.fake.pods


QUOTA_REFUSAL = ('pods "bd-x-1-abc-x7k2p" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, '
                 "limited: pods=0")


@pytest.fixture
def quick_event_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events lists of pod-less Jobs at 0.2 s, 0.4 s, 0.8 s... instead of 2 s, 4 s, 8 s."""
    monkeypatch.setattr(pacing, "FIRST_LIST_SECONDS", 0.2)
    monkeypatch.setattr(pacing, "LONGEST_LIST_INTERVAL_SECONDS", 1.0)


@pytest.mark.usefixtures("quick_event_lists")
def test_a_pod_refused_at_creation_ends_the_attempt_from_the_jobs_events(harness: Callable[..., Harness]) -> None:
    h = harness(scheduling_timeout_seconds=60.0)
    h.fake.admission = lambda _job: QUOTA_REFUSAL
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.ADMISSION_REFUSED
    assert result.message == f"pod refused at creation: {QUOTA_REFUSAL}"
    assert result.exit_code is None and result.exit_code_reason and not result.pod_names
    assert result.raw_status and sorted(e["reason"] for e in result.raw_status["events"]) == [
        "AttemptStarted", "FailedCreate"]
    # one list, FIRST_LIST_SECONDS after creation: not on every tick of the loop (0.02 s)
    assert h.fake.calls["list_events"] == 1
    assert h.fake.deleted_jobs == [result.job_name]
    for text in logs(result).values():
        assert b"no output: pod refused at creation: pods" in text


def test_a_refusal_explains_a_pod_never_scheduled(harness: Callable[..., Harness]) -> None:
    # Given up (scheduling timeout) before the first list: the last look reads the Job's Events.
    h = harness(scheduling_timeout_seconds=0.2)
    h.fake.admission = lambda _job: QUOTA_REFUSAL
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.ADMISSION_REFUSED and QUOTA_REFUSAL in result.message
    assert h.fake.calls["list_events"] == 1


@pytest.mark.usefixtures("quick_event_lists")
def test_a_job_the_job_controller_never_gets_to_is_not_charged_and_not_unschedulable(
    harness: Callable[..., Harness],
) -> None:
    # Past the scheduling timeout with no pod (the kwok rig at P=500: the Job controller's
    # queue ~100 s deep): not "unschedulable", the platform's failure, not the phase's.
    h = harness(scheduling_timeout_seconds=0.2, start_timeout_seconds=0.3)
    h.fake.makes_pod = lambda _job: False
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.API_ERROR and not result.charged
    assert result.message.startswith("no pod made for the Job within 0.5s and no FailedCreate Event"), result.message
    assert result.exit_code is None and result.exit_code_reason == "the Job controller made no pod"
    assert not result.pod_names and h.fake.deleted_jobs == [result.job_name]
    # Never synced by the Job controller (no startTime): no pod was tried, so its Events
    # are not listed while it waits (at P=500 on a throttled controller: 5.4 lists a Job).
    assert h.fake.calls["list_events"] <= 1, h.fake.calls["list_events"]  # the verdict's own, at most


@pytest.mark.usefixtures("quick_event_lists")
def test_a_failed_events_list_is_noted_and_asked_again_at_the_next_interval(
    harness: Callable[..., Harness],
) -> None:
    h = harness(scheduling_timeout_seconds=60.0)
    h.fake.admission = lambda _job: QUOTA_REFUSAL
    h.fake.inject("list_events", Forbidden("events is forbidden: User cannot list events", status=403))
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.ADMISSION_REFUSED
    assert h.fake.calls["list_events"] == 2  # refused by RBAC (noted), then one interval later
    assert result.raw_status and "Job events not listed: Forbidden: events is forbidden" in " ".join(
        result.raw_status["notes"])


TRACEBACK = b'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\nValueError: bad row 7\n'


def test_the_first_error_line_is_said_once_in_the_message(harness: Callable[..., Harness]) -> None:
    # The termination message is the log's tail, which ends with the line the log reader picks.
    h = harness(script(Schedule(), Start(), Err(TRACEBACK), Exit(1, message=TRACEBACK.decode())))
    result = h.run(h.executor(), launch("same"))
    assert result.first_error_line == "ValueError: bad row 7"
    assert result.message == "exit code 1 (Error): ValueError: bad row 7"
    # A termination message of its own: the log's first error line still follows it.
    h.fake.script_for = script(Schedule(), Start(), Err(b"error: disk quota\n"), Exit(2, message="exiting 2"))
    other = h.run(h.executor(), launch("other"))
    assert other.message == "exit code 2 (Error): exiting 2: error: disk quota"


def test_exit_137_with_memory_limit_is_oom(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Exit(137)))
    assert h.run(h.executor(), launch(memory="64Mi")).failure_class is FailureClass.OOM_KILLED


def test_invalid_job_is_a_launch_error_and_5xx_storm_an_api_error(harness: Callable[..., Harness]) -> None:
    h = harness(retry_max_seconds=0.5, retry_attempts=3)
    ex = h.executor()
    h.fake.inject("create_job", Invalid("spec.template.spec.containers[0].image: Required value", status=422))
    bad = h.run(ex, launch("a"))
    assert bad.failure_class is FailureClass.LAUNCH_ERROR
    assert "Required value" in bad.message and bad.raw_status and bad.logs
    assert ex.unavailable() is None  # the server answered: refusing is not being lost
    h.fake.inject("create_job", server_error(), times=10)
    down = h.run(ex, launch("b"))
    assert down.failure_class is FailureClass.API_ERROR
    assert h.fake.calls["create_job"] == 1 + 3  # bounded by retry_attempts
    # the answer never came: the Job may exist, so the attempt stays open for adoption
    assert down.left_running and "may not exist" in str(down.exit_code_reason)
    assert ex.unavailable() and "lost the Kubernetes API" in str(ex.unavailable())
    # and nothing new is created while the API is lost
    after = h.run(ex, launch("c"))
    assert after.failure_class is FailureClass.API_ERROR and not after.left_running
    assert "not created" in after.message and h.fake.calls["create_job"] == 1 + 3


def test_a_restarting_apiserver_is_waited_for_by_time_not_by_count(harness: Callable[..., Harness]) -> None:
    h = harness(retry_max_seconds=5.0, retry_attempts=2)
    ex = h.executor()  # the server answered: from now on "refused" means restarting
    h.fake.inject("create_job", Unreachable("connection refused"), times=6)
    result = h.run(ex, launch())
    assert result.succeeded, result
    assert h.fake.calls["create_job"] == 7 and ex.unavailable() is None
    # a busy server still gets the bounded count of tries
    h.fake.inject("create_job", server_error(), times=3)
    busy = h.run(ex, launch("p2"))
    assert busy.failure_class is FailureClass.API_ERROR and h.fake.calls["create_job"] == 7 + 2


def test_never_reached_apiserver_fails_fast() -> None:
    fake = FakeKube()
    api = RetryingKubeApi(fake, settings(retry_max_seconds=30.0, retry_attempts=2))
    fake.inject("server_version", Unreachable("connection refused"), times=100)
    with pytest.raises(Unreachable):
        api.server_version()
    assert fake.calls["server_version"] == 2  # retry_attempts, not 30 s of tries


def test_watches_lost_past_the_budget_leave_the_job_for_adoption(harness: Callable[..., Harness]) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"working\n"), Gate(gate), Exit(0)),
                retry_max_seconds=0.3, retry_attempts=2)
    ex = h.executor()
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 3)
    for operation in ("watch_pods", "watch_jobs", "list_pods", "list_jobs"):
        h.fake.inject(operation, server_error(), times=10_000)
    h.fake.drop_watches()
    worker.join(20)
    (lost,) = box
    assert lost.failure_class is FailureClass.API_ERROR and lost.left_running, lost
    assert "lost the Kubernetes API" in lost.message and "left in place" in lost.message
    assert lost.exit_code is None and lost.exit_code_reason
    assert ex.unavailable() is not None
    assert launch_name() in h.fake.jobs  # not deleted: the next session adopts it
    gate.set()
    h.fake.faults.clear()


# -- API trouble: 429, watches, log streams ----------------------------------------------


def test_429_storm_is_retried_honouring_retry_after(harness: Callable[..., Harness]) -> None:
    h = harness()
    ex = h.executor()
    h.fake.storm("create_job", times=4, retry_after=0.05)
    h.fake.storm("stream_pod_log", times=2, retry_after=0.05)
    h.fake.storm("delete_job", times=2, retry_after=0.01)
    started = time.monotonic()
    result = h.run(ex, launch())
    assert result.succeeded, result
    assert time.monotonic() - started >= 4 * 0.05 + 2 * 0.05
    assert h.api.retries >= 8
    assert h.fake.calls["create_job"] == 5


def test_410_gone_during_a_watch_relists_and_the_attempt_finishes(harness: Callable[..., Harness]) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"before\n"), Gate(gate), Out(b"after\n"), Exit(0)))
    ex = h.executor()
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 3)  # 2 probes + the follow
    relists = h.fake.calls["list_jobs"]
    h.fake.expire_watches()
    assert wait_for(lambda: h.fake.calls["list_jobs"] > relists and h.fake.calls["list_pods"] > 1)
    gate.set()
    worker.join(10)
    assert box and box[0].succeeded, box
    assert logs(box[0])["stdout"] == b"before\nafter\n"


def test_dropped_watch_connections_reconnect_from_the_last_version(harness: Callable[..., Harness]) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Gate(gate), Exit(4)))
    ex = h.executor()
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: h.fake.pod_of(launch_name()) is not None)
    watches = h.fake.calls["watch_pods"]
    h.fake.bookmark()
    h.fake.drop_watches()
    assert wait_for(lambda: h.fake.calls["watch_pods"] > watches)
    gate.set()
    worker.join(10)
    assert box and box[0].failure_class is FailureClass.EXIT_CODE and box[0].exit_code == 4
    assert h.fake.calls["list_pods"] == 1  # resumed from the resourceVersion, no relist


def test_bookmarks_move_the_resource_version(harness: Callable[..., Harness]) -> None:
    h = harness()
    ex = h.executor()
    reflector = ex._watches.reflectors(SESSION)[0]
    before = reflector.resource_version
    h.fake.bookmark()
    assert wait_for(lambda: reflector.resource_version != before)
    assert reflector.bookmarks >= 1


def test_log_stream_dropped_mid_line_resumes_without_gaps_or_repeats(harness: Callable[..., Harness]) -> None:
    """The combined log resumes from a timestamp (split logs: the test after this one)."""
    gate = threading.Event()
    lines = [f"line {i:02d} {'x' * i}\n".encode() for i in range(12)]
    steps: list[Step] = [Schedule(), Start()]
    steps += [Out(line, same_time=(i == 5)) for i, line in enumerate(lines[:8])]
    steps += [Gate(gate), *[Out(line) for line in lines[8:]], Exit(0)]
    h = harness(script(*steps), split=False)
    h.fake.log_chunk = 7  # every line arrives split across chunks
    ex = h.executor()
    name = launch_name()
    h.fake.drop_log(name, after_bytes=150)  # mid-line, inside the 4th line
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: sum(r["since"] is not None for r in h.fake.log_requests) >= 1)
    gate.set()
    worker.join(10)
    assert box and box[0].succeeded, box
    assert logs(box[0])["combined"] == b"".join(lines)
    assert any(r["since"] for r in h.fake.log_requests)  # resumed from a timestamp


def test_log_opens_the_kubelet_refuses_while_the_pod_runs_are_asked_again(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bug (a containerd restart under a running phase): the kubelet answered the reopen
    with a 400 "rpc error: ... server is not initialized yet", the pump gave up and the
    rest of the log was never read, while the attempt was recorded as succeeded."""
    monkeypatch.setattr(logs_module, "resume_pause", lambda _failures: 0.01)
    gate = threading.Event()
    lines = [f"line {i:02d}\n".encode() for i in range(12)]
    h = harness(script(Schedule(), Start(), *[Out(line) for line in lines[:6]], Gate(gate),
                       *[Out(line) for line in lines[6:]], Exit(0)), split=False)
    ex = h.executor()
    h.fake.drop_log(launch_name(), after_bytes=30)
    refusal = KubeError("rpc error: code = Unknown desc = server is not initialized yet", status=400,
                        reason="BadRequest")
    h.fake.inject("stream_pod_log", refusal, times=3)
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: len(h.fake.log_requests) >= 2)
    gate.set()
    worker.join(10)
    assert box and box[0].succeeded, box
    assert logs(box[0])["combined"] == b"".join(lines)


def test_split_log_dropped_mid_line_is_read_again_and_goes_on_after_the_stored_bytes(
    harness: Callable[..., Harness],
) -> None:
    gate = threading.Event()
    out = [f"line {i:02d} {'x' * i}".encode() for i in range(12)]
    err = [f"err {i:02d} {'y' * (12 - i)}\n".encode() for i in range(12)]
    steps: list[Step] = [Schedule(), Start()]
    for i in range(12):
        if i == 8:
            steps.append(Gate(gate))
        # stdout in two records (a P, then the F): the stderr record between them would
        # put a timestamp inside the stdout line, were timestamps asked for
        steps += [Out(out[i]), Err(err[i]), Out(b" end\n", same_time=True)]
    steps.append(Exit(0))
    h = harness(script(*steps))
    h.fake.log_chunk = 7  # every line arrives split across chunks
    ex = h.executor()
    h.fake.drop_log(launch_name(), after_bytes=60)  # whichever stream asks first, mid-line
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: len(h.fake.log_requests) >= 3)  # both streams, then the dropped one again
    gate.set()
    worker.join(10)
    assert box and box[0].succeeded, box
    assert logs(box[0]) == {"stdout": b"".join(line + b" end\n" for line in out), "stderr": b"".join(err)}
    assert all(r["since"] is None and not r["timestamps"] for r in h.fake.log_requests)  # from the start
    assert box[0].raw_status is None or "notes" not in box[0].raw_status, box[0].raw_status


def test_line_cursor_resumes_inside_equal_timestamps_and_partial_lines(tmp_path: Path) -> None:
    sink = FileLogSink(tmp_path)
    writer: LogWriter = sink.open("x.log", stream="combined")
    out = StoredLog(writer, "combined")
    cursor = LineCursor(out)
    first = b"2025-01-01T12:00:00.5Z a\n2025-01-01T12:00:00.5Z b\n2025-01-01T12:00:01.25Z cc"
    cursor.feed(first[:30])
    cursor.feed(first[30:])  # drop after "cc" of an unfinished line
    assert cursor.since_time() == "2025-01-01T12:00:01Z"
    cursor.new_connection()  # the server re-sends from the whole second: a, b were earlier
    cursor.feed(b"2025-01-01T12:00:01.25Z ccc\n2025-01-01T12:00:01.250000000Z d\n")
    cursor.new_connection()
    cursor.feed(
        b"2025-01-01T12:00:00.5Z a\n2025-01-01T12:00:00.5Z b\n2025-01-01T12:00:01.25Z ccc\n"
        b"2025-01-01T12:00:01.25Z d\n2025-01-01T13:00:01+01:00 old\n2025-01-01T13:00:02+01:00 e\n"
    )
    pointer = out.close()
    assert Path(pointer.url).read_bytes() == b"a\nb\nccc\nd\ne\n"


# -- crash safety: AlreadyExists, SIGTERM, adoption, leaks ---------------------------------


def launch_name(what: AttemptLaunch | None = None) -> str:
    return JobSpecBuilder.name((what or launch()).identity)


def test_already_exists_adopts_the_job_instead_of_running_twice(harness: Callable[..., Harness]) -> None:
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"first run\n"), Gate(gate), Out(b"done\n"), Exit(0)))
    ex = h.executor()
    what = launch()
    builder = JobSpecBuilder(h.settings, namespace=h.fake.namespace)
    h.fake.create_job(
        builder.build(what)
    )  # a controller that crashed
    worker, box = h.start(ex, what)
    assert wait_for(lambda: h.fake.calls["create_job"] == 2 and h.fake.calls["get_job"] == 1)
    gate.set()
    worker.join(10)
    assert box and box[0].succeeded, box
    assert len(box[0].pod_names) == 1  # one pod: the phase ran once
    assert logs(box[0])["stdout"] == b"first run\ndone\n"
    assert box[0].raw_status and "adopted" in str(box[0].raw_status["notes"])


def test_sigterm_collects_until_grace_then_leaves_the_job_for_adoption(harness: Callable[..., Harness]) -> None:
    gate = threading.Event()
    h = harness(
        script(
            Schedule(),
            Start(),
            Out(b"working 1\n"),
            Out(b"working 2 and"),
            Gate(gate),
            Out(b" more\n"),
            Err(b"late\n"),
            Exit(0),
        )
    )
    ex = h.executor()
    what = launch()
    stop = StopSignal()
    worker, box = h.start(ex, what, stop)
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 4)
    started = time.monotonic()
    stop.request(0.3)
    worker.join(10)
    assert 0.25 <= time.monotonic() - started < 3
    interrupted = box[0]
    assert interrupted.failure_class is FailureClass.CONTROLLER_INTERRUPTED
    assert interrupted.exit_code is None and interrupted.exit_code_reason
    assert logs(interrupted)["stdout"] == b"working 1\nworking 2 and"
    assert h.fake.deleted_jobs == [] and h.fake.finalizers_removed == []  # left in place
    # left on purpose for the next session: not a leak, and said as such
    assert ex.end() == []
    assert ex.left_for_adoption() == [f"job/{interrupted.job_name}"]

    # The next session adopts it: logs resume where they stopped, exactly once.
    ex2 = h.executor("batch-drain-20250101-130000")
    orphan = OrphanAttempt(
        launch=what, session_id=SESSION, job_name=interrupted.job_name, pod_uid=interrupted.pod_uid, started_at_iso=None
    )
    box2: list[AttemptResult] = []
    worker = threading.Thread(
        target=lambda: box2.append(ex2.adopt(orphan, stop=StopSignal(), on_update=h.updates.append))
    )
    worker.start()
    assert wait_for(lambda: h.fake.calls["get_job"] >= 1)
    gate.set()
    worker.join(10)
    adopted = box2[0]
    assert adopted.succeeded, adopted
    assert logs(adopted) == {"stdout": b"working 1\nworking 2 and more\n", "stderr": b"late\n"}
    assert [p.url for p in adopted.logs] == [p.url for p in interrupted.logs]  # same files, resumed
    assert h.fake.deleted_jobs == [interrupted.job_name] and not h.fake.pods
    assert ex2.end() == []


def test_an_unexpected_error_in_a_log_pump_is_said_on_the_attempt_not_a_silently_short_log(
        harness: Callable[..., Harness]) -> None:
    """Bug (kwok rig, 10,000 Jobs): urllib3's pool raised ValueError in a pump's open; the
    pump's thread died, and the attempt stored a short stdout as if it were whole."""
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"part one\n"), Gate(gate), Out(b"part two\n"), Exit(0)))
    ex = h.executor()
    worker, box = h.start(ex, launch())
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 4)  # 2 probes + both follows
    h.fake.inject("stream_pod_log", ValueError("file descriptor cannot be a negative integer (-1)"), times=2)
    gate.set()
    worker.join(10)
    result = box[0]
    assert result.succeeded, result  # the phase's own outcome is what the pod says
    assert result.raw_status is not None
    notes = [n for n in result.raw_status["notes"] if "unexpected ValueError" in n]
    assert notes and notes[0].startswith("log std"), result.raw_status
    assert "file descriptor cannot be a negative integer" in notes[0]
    assert ex.end() == []


def test_a_job_delete_that_failed_past_the_retries_is_tried_again_at_session_end(
        harness: Callable[..., Harness]) -> None:
    """Seen on the kwok rig: etcd stalled on compactions, 9 DELETEs timed out past the retry
    budget and the 9 Jobs stayed behind, named by the audit but never deleted."""
    h = harness(script(Schedule(), Start(), Out(b"ok\n"), Exit(0)), retry_max_seconds=0.5, retry_attempts=3)
    ex = h.executor()
    h.fake.inject("delete_job", server_error(), times=3)  # every try of the cleanup's call
    result = h.run(ex, launch())
    assert result.succeeded, result
    assert result.raw_status is not None
    errors = result.raw_status["cleanup_errors"]
    assert [(e["op"], e["status"]) for e in errors] == [("delete_job", 500)]
    assert launch_name() in h.fake.jobs and h.fake.deleted_jobs == []
    assert ex.end() == []  # deleted at the session's end, its pod waited for
    assert h.fake.deleted_jobs == [launch_name()] and not h.fake.pods and not h.fake.jobs


def test_a_removal_that_fails_again_at_session_end_is_said_beside_its_leak(
        harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Exit(0)), retry_max_seconds=0.5, retry_attempts=2)
    ex = h.executor()
    h.fake.inject("delete_job", server_error(), times=4)  # the cleanup's two tries and the end's two
    assert h.run(ex, launch()).succeeded
    leaks = ex.end()
    assert leaks[0] == f"job/{launch_name()}"
    assert leaks[-1].startswith(f"(delete_job of job/{launch_name()} failed again at session end: etcdserver")
    assert h.fake.calls["delete_job"] == 4


def test_a_finalizer_left_on_a_pod_is_removed_at_session_end(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Out(b"ok\n"), Exit(0)), retry_max_seconds=0.5, retry_attempts=2)
    ex = h.executor()
    h.fake.inject("remove_pod_finalizer", server_error(), times=2)
    result = h.run(ex, launch())
    assert result.raw_status is not None
    assert [e["op"] for e in result.raw_status["cleanup_errors"]] == ["remove_pod_finalizer"]
    assert h.fake.deleted_jobs == [launch_name()]
    assert [p["metadata"].get("deletionTimestamp") is not None for p in h.fake.pods.values()] == [True]
    assert ex.end() == []  # the finalizer went at the end: the pod with it
    assert not h.fake.pods


def test_a_job_deleted_with_cascade_orphan_is_followed_to_its_pods_end(harness: Callable[..., Harness]) -> None:
    """Bug: the attempt closed as pod_deleted while the orphaned pod ran on; its log was cut,
    the pod leaked and the phase was free to run again."""
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"part one\n"), Gate(gate), Out(b"part two\n"), Exit(0)))
    ex = h.executor()
    worker, box = h.start(ex, launch())
    # two calls are the split-stream probe of begin(): wait for both of the pod's follows
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 4)
    h.fake.delete_job(launch_name(), propagation="Orphan")  # kubectl delete job --cascade=orphan
    time.sleep(0.3)
    assert not box  # still following the pod that runs on
    gate.set()
    worker.join(10)
    result = box[0]
    assert result.succeeded, result
    assert logs(result)["stdout"] == b"part one\npart two\n"
    assert h.fake.deleted_pods == result.pod_names  # no owner left: deleted by us
    assert not h.fake.pods
    assert ex.end() == []


class _UnreadableSink:
    """A log store whose reads fail (EACCES) while writes would still truncate."""

    def __init__(self, inner: FileLogSink) -> None:
        self.inner = inner

    def open(self, key: str, *, stream: str, resume: bool = False) -> LogWriter:
        return self.inner.open(key, stream=stream, resume=resume)

    def put(self, key: str, data: bytes) -> str:
        return self.inner.put(key, data)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        return self.inner.put_stream(key, chunks)

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key)

    def read(self, url: str) -> Iterator[bytes]:
        raise PermissionError(13, "Permission denied", url)

    def location(self) -> str:
        return self.inner.location()


def _left_by_sigterm(h: Harness, gate: threading.Event) -> AttemptResult:
    ex = h.executor()
    stop = StopSignal()
    worker, box = h.start(ex, launch(), stop)
    assert wait_for(lambda: h.fake.calls["stream_pod_log"] >= 4)
    stop.request(0.2)
    worker.join(10)
    ex.end()
    assert box[0].left_running, box[0]
    return box[0]


def test_an_unreadable_log_store_on_adoption_never_truncates_the_stored_log(
    harness: Callable[..., Harness],
) -> None:
    """Bug: the read error was swallowed and the log reopened without resume (truncated)."""
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"kept line\n"), Gate(gate), Out(b"after\n"), Exit(0)))
    interrupted = _left_by_sigterm(h, gate)
    before = {p.url: Path(p.url).read_bytes() for p in interrupted.logs}
    assert b"kept line\n" in before[next(p.url for p in interrupted.logs if p.stream == "stdout")]

    ex2 = KubernetesExecutor(h.api, h.settings, tick_seconds=0.02, job_condition_grace_seconds=0.5)
    ex2.begin(session_id="batch-drain-20250101-130000", sink=_UnreadableSink(h.sink))
    h.executors.append(ex2)
    orphan = OrphanAttempt(launch=launch(), session_id=SESSION, job_name=interrupted.job_name,
                           pod_uid=interrupted.pod_uid, started_at_iso=None)
    gate.set()
    result = ex2.adopt(orphan, stop=StopSignal(), on_update=h.updates.append)
    assert {url: Path(url).read_bytes() for url in before} == before  # not one byte lost
    assert result.left_running and result.halt and "log store unreadable" in result.halt
    assert result.failure_class is FailureClass.API_ERROR and "Permission denied" in result.message
    assert h.fake.deleted_jobs == []  # the Job stays for a session that can read the store


def test_adoption_resumes_a_log_stored_under_the_old_key(harness: Callable[..., Harness]) -> None:
    """Stores written before log keys became injective keep working on adoption."""
    gate = threading.Event()
    h = harness(script(Schedule(), Start(), Out(b"old one\n"), Gate(gate), Out(b"new one\n"), Exit(0)))
    interrupted = _left_by_sigterm(h, gate)
    ident = launch().identity
    for pointer in interrupted.logs:  # what an older controller would have left
        legacy = h.sink.root / legacy_log_key(ident.session_id, ident.run_id, ident.phase_id, ident.attempt,
                                              pointer.stream)
        legacy.parent.mkdir(parents=True, exist_ok=True)
        Path(pointer.url).rename(legacy)
    ex2 = h.executor("batch-drain-20250101-130000")
    orphan = OrphanAttempt(launch=launch(), session_id=SESSION, job_name=interrupted.job_name,
                           pod_uid=interrupted.pod_uid, started_at_iso=None)
    gate.set()
    adopted = ex2.adopt(orphan, stop=StopSignal(), on_update=h.updates.append)
    assert adopted.succeeded, adopted
    assert logs(adopted)["stdout"] == b"old one\nnew one\n"
    assert all("__" in Path(p.url).name for p in adopted.logs)


def test_adopting_a_vanished_job_is_recorded(harness: Callable[..., Harness]) -> None:
    h = harness()
    ex = h.executor("batch-drain-20250101-130000")
    orphan = OrphanAttempt(launch=launch(), session_id=SESSION, job_name=None, pod_uid="uid-1", started_at_iso=None)
    result = ex.adopt(orphan, stop=StopSignal(), on_update=h.updates.append)
    assert result.failure_class is FailureClass.POD_DELETED and result.exit_code_reason
    never = ex.adopt(
        OrphanAttempt(launch("p2"), SESSION, None, None, None), stop=StopSignal(), on_update=h.updates.append
    )
    assert never.failure_class is FailureClass.CONTROLLER_INTERRUPTED


def test_stop_before_create_creates_nothing(harness: Callable[..., Harness]) -> None:
    h = harness()
    stop = StopSignal()
    stop.request(0.0)
    result = h.run(h.executor(), launch(), stop)
    assert result.failure_class is FailureClass.CONTROLLER_INTERRUPTED
    assert h.fake.calls["create_job"] == 0


def test_leak_audit_lists_what_the_session_left(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Hang()))
    ex = h.executor()
    what = launch()
    builder = JobSpecBuilder(h.settings, namespace=h.fake.namespace)
    h.fake.create_job(
        builder.build(what)
    )
    pod = h.fake.pod_of(launch_name())
    assert pod is not None
    assert ex.end() == [f"job/{launch_name()}", f"pod/{pod['metadata']['name']}"]


# -- many at once -------------------------------------------------------------------------


def test_parallel_attempts_share_one_watch_pair_and_never_poll(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule(), Start(), Out(b"ok\n"), Exit(0)))
    ex = h.executor()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: h.run(ex, launch(f"p{i}")), range(40)))
    assert all(r.succeeded for r in results), [r.message for r in results if not r.succeeded]
    assert h.fake.calls["watch_jobs"] == 1 and h.fake.calls["watch_pods"] == 1
    assert h.fake.calls["get_job"] == 0 and h.fake.calls["get_pod"] == 0
    assert len({r.job_name for r in results}) == 40
    assert ex.end() == []


def test_rate_limiter_paces_creation() -> None:
    limiter = RateLimiter(50.0)
    started = time.monotonic()
    for _ in range(6):
        assert limiter.acquire(timeout=5.0)
    assert time.monotonic() - started >= 5 / 50 * 0.9
    cancel = threading.Event()
    cancel.set()
    slow = RateLimiter(0.5)
    assert slow.acquire(timeout=1.0)
    assert not slow.acquire(timeout=0.1)  # next slot is 2 s away: refused, not waited for
    assert not slow.acquire(timeout=5.0, cancel=cancel)  # a stop request ends the wait


def test_events_backoff_lists_at_most_once_per_interval() -> None:
    # (monotonic now, due?) for an attempt created at now=100: 2 s, then 2, 4, 8, 10, 10 s apart.
    schedule = Backoff()
    looks = [(100.0, False), (101.9, False), (102.0, True), (102.1, False), (103.9, False), (104.0, True),
             (107.9, False), (108.0, True), (115.0, False), (116.0, True), (125.9, False), (126.0, True),
             (136.0, True), (140.0, False)]
    assert [(now, schedule.due(now, age=now - 100.0)) for now, _ in looks] == looks
    adopted = Backoff()  # a Job created long before this session took it over: list at once
    assert adopted.due(500.0, age=300.0) and not adopted.due(501.0, age=301.0)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# -- the real seam's pure parts -------------------------------------------------------------


def test_real_seam_maps_statuses_and_watch_errors() -> None:
    from batchdrain.kube import AlreadyExists, Conflict, Gone, ServerError, TooManyRequests
    from batchdrain.kube.responses import error_from_body as _error_from_body
    from batchdrain.kube.responses import watch_event as _watch_event

    status = b'{"kind":"Status","reason":"AlreadyExists","message":"jobs.batch \\"x\\" already exists"}'
    created = _error_from_body(409, status, {}, creating=True)
    assert isinstance(created, AlreadyExists) and not created.retriable
    assert type(_error_from_body(409, b"{}", {}, creating=False)) is Conflict
    busy = _error_from_body(429, b"slow down", {"Retry-After": "3"}, creating=False)
    assert isinstance(busy, TooManyRequests) and busy.retriable and busy.retry_after == 3.0
    assert isinstance(_error_from_body(503, b"", {}, creating=False), ServerError)
    assert _watch_event(b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}')[0] == "BOOKMARK"
    with pytest.raises(Gone):
        _watch_event(b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"old"}}')


def test_the_job_tells_its_story_in_events(harness: Callable[..., Harness]) -> None:
    h = harness(script(Schedule("node-1"), Start(), Err(b"ValueError: nope\n"), Exit(2)))
    ex = h.executor()
    result = h.run(ex, launch())
    events = h.fake.events_by_object[result.job_name or ""]
    assert [e["reason"] for e in events if e["source"]["component"] == "batchdrain"] == [
        "AttemptStarted", "Classified"]
    classified = next(e for e in events if e["reason"] == "Classified")
    assert classified["type"] == "Warning" and "exit_code" in classified["message"]
    assert result.logs[0].url in classified["message"]


@pytest.mark.parametrize(("chunks", "passed", "error"), [
    # the kubelet's message as the whole body, in one piece or many: no output, an error
    ([b"unable to retrieve container logs for containerd://4e0f"], b"", "unable to retrieve container logs for "
                                                                         "containerd://4e0f"),
    ([b"unable to retr", b"ieve container logs for containerd://4e0f\n"], b"", "unable to retrieve container logs"
                                                                                " for containerd://4e0f"),
    ([b'failed to try resolving symlinks in path "/var/log/pods/x/0.log": lstat: no such file'], b"",
     'failed to try resolving symlinks in path "/var/log/pods/x/0.log": lstat: no such file'),
    # a restarting container runtime's gRPC error, which the kubelet sends the same way
    ([b"rpc error: code = Unknown desc = server is not initialized yet"], b"",
     "rpc error: code = Unknown desc = server is not initialized yet"),
    # output that only begins like it, or goes on after it, is the phase's own
    ([b"unable to", b" reach the db\nretrying\n"], b"unable to reach the db\nretrying\n", None),
    ([b"unable to retrieve container logs for x\n", b"and more output\n"],
     b"unable to retrieve container logs for x\nand more output\n", None),
    ([b"2026-01-01T00:00:00.000000001Z hello\n"], b"2026-01-01T00:00:00.000000001Z hello\n", None),
    ([], b"", None),
])
def test_a_kubelet_error_sent_as_the_log_body_is_not_stored(chunks: list[bytes], passed: bytes,
                                                             error: str | None) -> None:
    """Bug: "unable to retrieve container logs for containerd://..." was appended to stdout."""
    guard = KubeletErrorBody()
    assert b"".join(guard.screen(chunks)) == passed
    assert guard.error == error


RUNTIME_DOWN = b"rpc error: code = Unknown desc = server is not initialized yet"


@pytest.mark.parametrize(("chunks", "tail", "passed", "error"), [
    # Bug (containerd restarted under a follow): the kubelet appended the runtime's error
    # after the lines it had sent; it was stored, and the reconnect's re-sent bytes no
    # longer matched the stored ones, so the rest of the log was never read.
    ([b"line 0\nline 1\n", RUNTIME_DOWN], True, b"line 0\nline 1\n", RUNTIME_DOWN.decode()),
    ([b"line 0\nline 1\nrpc err", b"or: code = Unknown desc = x\n"], True, b"line 0\nline 1\n",
     "rpc error: code = Unknown desc = x"),
    # such a line followed by more output is the phase's own, and so is any tail of a final read
    ([b"a\n", RUNTIME_DOWN + b"\n", b"b\n"], True, b"a\n" + RUNTIME_DOWN + b"\nb\n", None),
    ([b"line 0\n", RUNTIME_DOWN], False, b"line 0\n" + RUNTIME_DOWN, None),
    # a partial line that is no error is passed on at once, not held to the end
    ([b"line 0\nprogress 50%"], True, b"line 0\nprogress 50%", None),
])
def test_a_kubelet_error_appended_to_a_followed_log_is_not_stored(chunks: list[bytes], tail: bool, passed: bytes,
                                                                  error: str | None) -> None:
    guard = KubeletErrorBody()
    assert b"".join(guard.screen(chunks, tail=tail)) == passed
    assert guard.error == error


def test_a_partial_line_that_is_no_error_is_not_held_back() -> None:
    guard = KubeletErrorBody()
    out = guard.screen(iter([b"line 0\nprogress 50%", b" 60%\n"]), tail=True)
    assert next(out) == b"line 0\nprogress 50%"  # before the next chunk is asked for


def test_adopting_a_deleted_job_releases_the_pod_its_finalizer_holds(harness: Callable[..., Harness]) -> None:
    """A controller killed between deleting the Job and removing the pod's logs finalizer
    leaves a terminating pod that nothing else will ever release: the adopter must."""
    h = harness(script(Schedule(), Start(), Out(b"done\n"), Exit(0)))
    what = launch()
    builder = JobSpecBuilder(h.settings, namespace=h.fake.namespace)
    h.fake.create_job(
        builder.build(what)
    )
    assert wait_for(lambda: (h.fake.pod_of(launch_name()) or {}).get("status", {}).get("phase") == "Succeeded")
    pod = h.fake.pod_of(launch_name())
    assert pod is not None
    h.fake.delete_job(launch_name())  # ... and the controller is SIGKILLed here
    assert pod["metadata"]["name"] in h.fake.pods  # held by batchdrain.io/logs
    ex = h.executor("batch-drain-20250101-130000")
    orphan = OrphanAttempt(launch=what, session_id=SESSION, job_name=launch_name(),
                           pod_uid=pod["metadata"]["uid"], started_at_iso=None)
    result = ex.adopt(orphan, stop=StopSignal(), on_update=h.updates.append)
    assert result.failure_class is FailureClass.POD_DELETED and result.exit_code_reason
    assert not h.fake.pods, "the adopter left the pod behind"
    assert ex.end() == []


def test_an_executor_bug_mid_attempt_leaves_the_attempt_open_for_adoption(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once in 10,000 Jobs on the kwok rig a bug ended an attempt while its Job ran; the
    # phase went back QUEUED with its Job still there, so a second attempt could run it.
    from batchdrain.executors.kubernetes.supervise import Supervisor

    def broken(*_: object) -> AttemptResult:
        raise ValueError("I/O operation on closed file.")

    monkeypatch.setattr(Supervisor, "supervise", broken)
    h = harness(script(Schedule(), Start(), Out(b"working\n"), Exit(0)))
    result = h.run(h.executor(), launch())
    assert result.failure_class is FailureClass.API_ERROR and not result.charged, result.message
    assert result.left_running, result.message
    assert "left in place for the next session to adopt" in result.message
    assert list(h.fake.jobs) and not h.fake.deleted_jobs  # the Job is the next session's to adopt
