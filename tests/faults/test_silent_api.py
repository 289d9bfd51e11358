"""The API server black-holed for 60 s mid-drain (issue 16, fault 1): noticed, resumed, exact.

The controller runs in this process (the kubernetes executor, its two watches and its
log follows) against a kubeconfig whose server is a Toxiproxy in front of the real API
server (its certificate names 127.0.0.1, so TLS verifies through the proxy). The proxy
is black-holed in both directions: every byte dropped, nothing closed. A recording
wrapper around the seam times every stream and call, so the test knows when a watch,
a log follow and an API call first noticed the silence; it heals the proxy only after
both a watch and a follow did (healing closes what the toxic held, which would be
noticed without any bound of ours). Then: every phase succeeded once, every stored log
is exactly what the pod printed (no lost or repeated line), nothing of the session is
left in the cluster.

Run alone, under the cluster lock; it does not stop any component of the cluster.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.rest import ApiException

from batchdrain.db import Database
from batchdrain.drain import DrainSession, SessionOutcome
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.kube import Silent, connect
from batchdrain.logstore import open_log_sink
from batchdrain.settings import Settings
from tests.e2e.conftest import IMAGE, Drainer, wait_for
from tests.faults.test_cluster_faults import assert_clean_outcome, payload, running_pods
from tests.toxiproxy import Toxiproxy

BLACKHOLE_SECONDS = 60.0
PHASES = 4
LINES = 80
PAUSE = 2.0  # one line every 2 s: the phases run through the whole silence


@dataclass
class Span:
    what: str
    opened: float
    ended: float | None = None
    ending: str | None = None


class Recorder:
    """The seam, with every stream's and call's start, end and how it ended."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.spans: list[Span] = []

    def _span(self, what: str) -> Span:
        span = Span(what, time.monotonic())
        with self._lock:
            self.spans.append(span)
        return span

    def _stream(self, what: str, opened: Any) -> Any:
        span = self._span(what)

        class Recorded:
            def __iter__(self) -> Iterator[Any]:
                try:
                    yield from opened
                    span.ending = "end"
                except BaseException as err:
                    span.ending = type(err).__name__
                    raise
                finally:
                    span.ended = time.monotonic()

            def close(self) -> None:
                opened.close()

        return Recorded()

    def watch_jobs(self, *args: Any, **kwargs: Any) -> Any:
        return self._stream("watch", self._inner.watch_jobs(*args, **kwargs))

    def watch_pods(self, *args: Any, **kwargs: Any) -> Any:
        return self._stream("watch", self._inner.watch_pods(*args, **kwargs))

    def stream_pod_log(self, *args: Any, **kwargs: Any) -> Any:
        return self._stream("log", self._inner.stream_pod_log(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            span = self._span(f"call {name}")
            try:
                result = attribute(*args, **kwargs)
                span.ending = "end"
                return result
            except BaseException as err:
                span.ending = type(err).__name__
                raise
            finally:
                span.ended = time.monotonic()

        return call

    def noticed(self, what: str, since: float) -> float | None:
        """Seconds from ``since`` until a ``what`` open before it ended ``Silent`` (None: not yet)."""
        with self._lock:
            ends = [s.ended - since for s in self.spans
                    if s.what == what and s.opened < since and s.ended is not None and s.ended > since
                    and s.ending == Silent.__name__]
        return min(ends) if ends else None

    def failed_calls(self, since: float) -> list[tuple[str, float]]:
        with self._lock:
            return [(s.what, s.ended - s.opened) for s in self.spans
                    if s.what.startswith("call") and s.ended is not None and s.ended > since
                    and s.ending not in (None, "end")]


def pods_running(drainer: Drainer) -> int:
    """Running pods, read directly (not through the proxy); a busy server's 5xx reads as none yet."""
    try:
        return running_pods(drainer)
    except ApiException as err:
        if err.status is not None and err.status >= 500:
            return 0
        raise


def counting_phase() -> list[str]:
    return ["python3", "-c",
            f"import time\nfor i in range({LINES}):\n    print('line', i, flush=True); time.sleep({PAUSE})"]


def proxied_kubeconfig(source: str, address: str, target: Path) -> str:
    config = yaml.safe_load(Path(source).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://{address}"
    target.write_text(yaml.safe_dump(config))
    return str(target)


def run_in_thread(fn: Callable[[], SessionOutcome]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["outcome"] = fn()
        except BaseException as err:
            box["error"] = err
            raise

    thread = threading.Thread(target=run, name="drain", daemon=True)
    thread.start()
    return thread, box


def test_api_server_silent_for_60s_is_noticed_and_nothing_is_lost(drainer: Drainer, tmp_path: Path) -> None:
    toxiproxy = Toxiproxy(tmp_path)
    try:
        proxy = toxiproxy.proxy("apiserver", "127.0.0.1:6443")
        drainer.import_rows([{"run_id": "silent", "phase_id": f"p{i}", "command": counting_phase()}
                             for i in range(PHASES)])
        settings = Settings(
            database_url=drainer.db_url, log_store=str(drainer.workdir / "logs"),
            kubeconfig=proxied_kubeconfig(drainer.cluster.kubeconfig, proxy.address, tmp_path / "proxied"),
            namespace=drainer.namespace, executor="kubernetes", default_image=IMAGE,
            image_pull_policy="IfNotPresent", parallelism=PHASES,
            # The retry bound outlasts the silence: this test is about noticing and
            # resuming (an API lost past the bound: test_cluster_faults).
            retry_max_seconds=180, scheduling_timeout_seconds=300, start_timeout_seconds=300,
        )
        api = Recorder(connect(settings))
        db = Database(settings.database_url, retry_max_seconds=settings.retry_max_seconds)
        session = DrainSession(db=db, sink=open_log_sink(settings.log_store), settings=settings,
                               executor=KubernetesExecutor(api, settings))
        thread, box = run_in_thread(session.run)
        wait_for(lambda: pods_running(drainer) >= PHASES, f"{PHASES} running pods", timeout=300)
        wait_for(lambda: sum(1 for s in api.spans if s.what == "log" and s.ended is None) >= PHASES,
                 "every pod's log followed")
        time.sleep(2 * PAUSE)  # a few lines stored before the silence
        silenced = time.monotonic()
        proxy.blackhole()
        wait_for(lambda: api.noticed("watch", silenced) is not None and api.noticed("log", silenced) is not None,
                 "a watch and a log follow to notice the silence", timeout=300)
        time.sleep(max(0.0, silenced + BLACKHOLE_SECONDS - time.monotonic()))
        assert thread.is_alive(), box
        proxy.heal()
        healed = time.monotonic() - silenced
        thread.join(timeout=LINES * PAUSE + 600)
        assert not thread.is_alive(), "the session did not end"
        db.dispose()
    finally:
        if "session" in locals() and "thread" in locals() and thread.is_alive():
            # A failed test must not leave the session's workers (not daemons) running.
            session.stop.request(0.0)
            thread.join(timeout=300)
        toxiproxy.close()
    outcome: SessionOutcome = box["outcome"]
    assert outcome.error is None and not outcome.leaks, (outcome.error, outcome.leaks)
    attempts = assert_clean_outcome(drainer, (outcome.exit_code, ""), PHASES)
    assert Counter(a.failure_class for a in attempts) == {"succeeded": PHASES}, [
        (a.phase_id, a.failure_class, a.message) for a in attempts]
    expected = [f"line {i}" for i in range(LINES)]
    digest = hashlib.sha256("".join(f"{line}\n" for line in expected).encode()).hexdigest()
    for attempt in attempts:
        stdout = next(p for p in attempt.logs if p.stream in ("stdout", "combined"))
        printed = [line for line in payload(stdout.url).decode().splitlines() if line.startswith("line ")]
        # In order, each once: a line lost or repeated across the silence shows here.
        assert printed == expected, (attempt.phase_id, Counter(printed).most_common(3), len(printed))
        assert hashlib.sha256("".join(f"{line}\n" for line in printed).encode()).hexdigest() == digest
    watch, log = api.noticed("watch", silenced), api.noticed("log", silenced)
    calls = api.failed_calls(silenced)
    print(f"\nFIGURE api: watch noticed the silence after {watch:.1f}s, a log follow after {log:.1f}s; "
          f"healed at {healed:.1f}s; failed calls during it: "
          + (", ".join(f"{name} after {took:.1f}s" for name, took in calls) or "none"))
