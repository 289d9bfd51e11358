"""The harness side of ``kube_executor_overhead.py``: meter, pod clock, thread sampler.

* ``FakeMeter`` / ``MeteredKube``: the CPU spent inside the fake (see that script).
* ``PodClock``: pods that stay running for ``run_seconds`` before they print their last
  line and exit, so that at parallelism P there really are P attempts running with
  their log follows open (with the fake's script run through at once inside
  ``create_job``, most attempts find their pod already ended and follow nothing). One
  thread finishes every pod on time; its CPU is the fake's.
* ``ThreadSampler``: the peak number of threads, from ``threading.active_count()``
  and from the kernel (``Threads:`` in /proc/self/status), and which kinds of thread
  made up the peak (by the name prefixes the controller and the pools give them).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.unit.fake_kube import Err, Exit, FakeKube

# -- CPU spent inside the fake -----------------------------------------------------------


class FakeMeter:
    """Per-thread sums of CPU seconds spent in the fake.

    Each thread only ever adds to its own slot, so no lock (which would itself add
    contention to what is being measured) is needed.
    """

    def __init__(self) -> None:
        self._slots: dict[int, list[float]] = {}

    def slot(self) -> list[float]:
        ident = threading.get_ident()
        slot = self._slots.get(ident)
        if slot is None:
            slot = self._slots[ident] = [0.0]
        return slot

    @property
    def seconds(self) -> float:
        return sum(s[0] for s in list(self._slots.values()))


class _MeteredStream:
    def __init__(self, inner: Any, meter: FakeMeter) -> None:
        self._inner = inner
        self._meter = meter

    def close(self) -> None:
        slot = self._meter.slot()
        t0 = time.thread_time()
        try:
            self._inner.close()
        finally:
            slot[0] += time.thread_time() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __iter__(self) -> Iterator[Any]:
        slot = self._meter.slot()
        t0 = time.thread_time()
        try:
            iterator = iter(self._inner)
        finally:
            slot[0] += time.thread_time() - t0
        while True:
            t0 = time.thread_time()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                slot[0] += time.thread_time() - t0
            yield item


class MeteredKube:
    """The fake behind a wrapper that charges the CPU of every call to ``meter``."""

    def __init__(self, fake: FakeKube, meter: FakeMeter) -> None:
        self._fake = fake
        self._meter = meter

    @property
    def namespace(self) -> str:
        return self._fake.namespace

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._fake, name)
        meter = self._meter

        def call(*args: Any, **kwargs: Any) -> Any:
            slot = meter.slot()
            t0 = time.thread_time()
            try:
                result = method(*args, **kwargs)
            finally:
                slot[0] += time.thread_time() - t0
            if name.startswith(("watch_", "stream_")):
                return _MeteredStream(result, meter)
            return result

        return call


# -- pods that run for a while --------------------------------------------------------------


class PodClock:
    """Ends each Job's pod ``run_seconds`` after its creation: last line, then exit 0.

    The pod's script stops at ``Hang`` (running, output so far written); ``schedule`` is
    called from the fake's ``script_for`` inside ``create_job``, and this one thread
    applies the remaining steps when they are due.
    """

    def __init__(self, fake: FakeKube, run_seconds: float, meter: FakeMeter | None) -> None:
        self._fake = fake
        self._run_seconds = run_seconds
        self._meter = meter
        self._due: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="bench-podclock", daemon=True)
        self._thread.start()

    def schedule(self, job_name: str) -> None:
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + self._run_seconds, job_name))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5.0)

    def _loop(self) -> None:
        slot = self._meter.slot() if self._meter is not None else [0.0]
        while True:
            with self._cond:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, job = heapq.heappop(self._due)
            t0 = time.thread_time()
            for pod in self._fake.job_pods.get(job, [])[-1:]:
                if self._fake._step(pod, Err(b"a warning\n")):
                    self._fake._step(pod, Exit(0))
            slot[0] += time.thread_time() - t0


# -- threads ----------------------------------------------------------------------------------

# Thread name prefixes -> kind. The session's pool names its threads "attempt_N", the
# benchmark's executor-mode pool "ThreadPoolExecutor-..."; both are the per-attempt worker.
_KINDS = (("attempt", "worker"), ("ThreadPoolExecutor", "worker"), ("logs", "log follower"),
          ("bench-", "harness"), ("MainThread", "main"))


def _kind(name: str) -> str:
    for prefix, kind in _KINDS:
        if name.startswith(prefix):
            return kind
    return "other (watches, heartbeat, fake)"


def kernel_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


class ThreadSampler:
    """Samples the thread count every ``interval`` seconds; keeps the peak and its make-up."""

    def __init__(self, interval: float = 0.1) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self.peak_active = 0
        self.peak_kernel = 0
        self.peak_kinds: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            active = threading.active_count()
            self.peak_kernel = max(self.peak_kernel, kernel_threads())
            if active > self.peak_active:
                self.peak_active = active
                self.peak_kinds = dict(Counter(_kind(t.name) for t in threading.enumerate()))

    def figures(self) -> dict[str, Any]:
        return {"peak_threads_active": self.peak_active, "peak_threads_kernel": self.peak_kernel,
                "peak_threads_by_kind": self.peak_kinds}
