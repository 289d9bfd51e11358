"""Controller overhead of the Kubernetes executor, with the fake seam at zero latency.

Drives N phases through ``KubernetesExecutor`` at parallelism P, the way the drain
loop does (a thread pool calling ``execute()``), against the in-memory ``FakeKube``
from the unit tests behind the real retry policy, and prints CPU seconds per phase
(``time.process_time``: user + system, every thread) and peak RSS.

The fake runs in the same process, so its CPU and memory are included: the figures
are an upper bound on the controller's own. Targets (issue 3): <= 2 ms CPU per phase
and RSS < 150 MB for 10,000 phases at parallelism 100.

    PYTHONPATH=controller:. python benchmarks/kube_executor_overhead.py [--phases N]
        [--parallelism P] [--sink null|file] [--combined]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.unit.fake_kube import Err, Exit, FakeKube, Out, Schedule, Start

from batchdrain.domain import LogPointer, PhaseSpec
from batchdrain.executors.base import AttemptLaunch, StopSignal
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.identity import Identity
from batchdrain.kube import RetryingKubeApi
from batchdrain.logstore import FileLogSink, LogSink
from batchdrain.settings import Settings

SESSION = "batch-drain-20250101-000000"


class _HashWriter:
    def __init__(self, key: str, stream: str) -> None:
        self._key, self._stream = key, stream
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def close(self) -> LogPointer:
        return LogPointer(self._stream, f"null://{self._key}", self.size, self._hash.hexdigest())


class NullSink:
    """Hashes and counts, stores nothing: isolates the controller from the disk."""

    def open(self, key: str, *, stream: str, resume: bool = False) -> _HashWriter:
        return _HashWriter(key, stream)

    def put(self, key: str, data: bytes) -> str:
        return f"null://{key}"

    def read(self, url: str) -> Iterator[bytes]:
        return iter(())

    def location(self) -> str:
        return "null://"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=100)
    parser.add_argument("--sink", choices=("null", "file"), default="null")
    parser.add_argument("--combined", action="store_true", help="cluster without split log streams")
    args = parser.parse_args()

    settings = Settings(job_create_rate=1e9, parallelism=args.parallelism)
    script = (Schedule(), Start(), Out(b"hello from the phase\n"), Err(b"a warning\n"), Exit(0))
    fake = FakeKube(split_streams=not args.combined, script_for=lambda _job: script, max_history=2000)
    api = RetryingKubeApi(fake, settings)
    executor = KubernetesExecutor(api, settings)
    tmp = tempfile.TemporaryDirectory(prefix="bd-bench-")
    sink: LogSink = NullSink() if args.sink == "null" else FileLogSink(Path(tmp.name))
    executor.begin(session_id=SESSION, sink=sink)

    def launch(i: int) -> AttemptLaunch:
        identity = Identity(SESSION, f"run-{i % 50}", f"phase-{i}", 1, "postgresql://u:pw@db/x", None)
        spec = PhaseSpec(command=("python", "-c", "print('hello')"))
        return AttemptLaunch(
            identity, spec, spec.command, tuple(identity.env(settings).items()), 600.0, "python:3.11-slim"
        )

    stop = StopSignal()
    classes: Counter[str] = Counter()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(args.parallelism) as pool:
        for result in pool.map(
            lambda i: executor.execute(launch(i), stop=stop, on_update=lambda _u: None), range(args.phases)
        ):
            classes[result.failure_class.value] += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    relists = sum(w.jobs.relists + w.pods.relists for w in executor._watches.values())
    leaks = executor.end()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        f"phases:            {args.phases} at parallelism {args.parallelism}"
        f" ({executor.log_mode.value} logs, {args.sink} sink)"
    )
    print(f"outcomes:          {dict(classes)}")
    print(f"leaks:             {len(leaks)}")
    print(f"wall:              {wall:.2f} s ({args.phases / wall:.0f} phases/s)")
    print(f"CPU per phase:     {cpu / args.phases * 1000:.3f} ms (target <= 2 ms)")
    print(f"peak RSS:          {peak_kib / 1024:.1f} MB (target < 150 MB)")
    print(f"API retries:       {api.retries}; watch lists (initial + relists after 410): {relists}")
    ok = cpu / args.phases <= 0.002 and peak_kib / 1024 < 150 and classes["succeeded"] == args.phases
    return 0 if ok and not leaks else 1


if __name__ == "__main__":
    sys.exit(main())
