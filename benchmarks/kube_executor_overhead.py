"""Controller overhead of the Kubernetes executor, with the fake seam at zero latency.

Drives N phases at parallelism P against the in-memory ``FakeKube`` from the unit tests,
behind the real retry policy, in one of two modes:

* ``executor`` (default): ``KubernetesExecutor.execute()`` called from a thread pool,
  the way the drain loop calls it, with no database. At most ``2 * P`` calls are queued
  at a time, as the drain loop bounds what it submits, so that the benchmark's own
  bookkeeping does not grow with N.
* ``drain``: the whole ``DrainSession`` (plan, claim, execute, record, report) on a
  SQLite file, so that what the database gets per phase is measured too: rows written
  (the rowcount of every INSERT, UPDATE and DELETE the session issues, counted by a
  SQLAlchemy ``after_cursor_execute`` hook installed here, not in the product) and the
  rows present in each table once the session is over.

What is measured:

* ``cpu_total``: ``time.process_time()`` over the run (user + system, every thread).
  The fake runs in the same process, so this includes its CPU.
* ``cpu_fake``: CPU spent inside the fake's own code: each call into it, and each step
  of the watch and log streams it returns, is timed with ``time.thread_time()`` on the
  calling thread. That includes the fake's scripted kubelet, which runs inside
  ``create_job``.
* ``cpu_controller`` = ``cpu_total - cpu_fake``: batchdrain's share, plus the harness
  and interpreter costs (imports excluded: the clock starts after set-up). Waking a
  thread the fake notified is charged to the controller: the split is an estimate,
  the total is exact. The meter itself costs about 1 us per timed call (some 0.1-0.3
  ms per phase, on both sides of the split); ``--no-split`` leaves it out and reports
  the total only, comparable with figures taken before the split existed.
* ``GC per phase``: CPU in the cyclic garbage collector (part of the total), which
  grows with everything alive in the process, the fake's records included.
* ``peak RSS`` from ``getrusage`` (the fake's memory is included). In drain mode this
  includes the SQLAlchemy engine and the end-of-session report for N attempts.
* ``peak threads``: sampled every 0.1 s, from ``threading.active_count()`` and from the
  kernel (``Threads:`` in /proc/self/status), with the kinds at the peak (workers,
  log followers, the rest) by thread name.

``--run-seconds S`` keeps each pod running S seconds (its first line written, its log
follows open) before its last line and exit 0, so that at parallelism P there are P
attempts running at once, as on a cluster; without it the fake runs the whole script
inside ``create_job`` and most attempts find their pod already ended. One harness
thread (``fake_seam_load.PodClock``) ends the pods; its CPU is the fake's.

Targets (issue 3): <= 2 ms controller CPU per phase and RSS < 150 MB for 10,000 phases
at parallelism 100, flat as N grows; (issue 15.4) at P = 1,000: <= 2 ms controller CPU
per phase, RSS <= 300 MB.

    PYTHONPATH=controller:. python benchmarks/kube_executor_overhead.py [--phases N]
        [--parallelism P] [--mode executor|drain] [--sink null|file] [--combined]
        [--run-seconds S] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.fake_seam_load import FakeMeter, MeteredKube, PodClock, ThreadSampler
from tests.unit.fake_kube import Err, Exit, FakeKube, Hang, Out, Schedule, Start

from batchdrain.domain import LogPointer, PhaseSpec, PhaseState, utcnow
from batchdrain.executors.base import AttemptLaunch, StopSignal
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.identity import Identity
from batchdrain.kube import RetryingKubeApi
from batchdrain.logstore import FileLogSink, LogSink
from batchdrain.settings import Settings

SESSION = "batch-drain-20250101-000000"
RUNS = 50


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

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> str:
        for _ in chunks:
            pass
        return f"null://{key}"

    def url_for(self, key: str) -> str:
        return f"null://{key}"

    def read(self, url: str) -> Iterator[bytes]:
        return iter(())

    def location(self) -> str:
        return "null://"


class _GcTimer:
    """CPU spent in the cyclic garbage collector, by generation (it grows with the heap)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds[info["generation"]] += time.thread_time() - self._started


# -- DB rows written ----------------------------------------------------------------------


class _RowCounter:
    """Transactions, statements by kind (reads too), and rows written, from SQLite's own change counter.

    A cursor's rowcount is not known when an ``UPDATE ... RETURNING`` has just been
    executed (SQLite steps it as rows are fetched), so rows are counted per transaction
    instead: the connection's ``total_changes`` at commit minus its value at begin.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.transactions = 0
        self.statements: Counter[str] = Counter()
        self.all_statements: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._at_begin: dict[int, int] = {}

    def install(self, engine: Any) -> None:
        from sqlalchemy import event  # here: the executor mode's RSS should not include SQLAlchemy

        event.listen(engine, "after_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)

    def remove(self, engine: Any) -> None:
        from sqlalchemy import event

        event.remove(engine, "after_cursor_execute", self._statement)
        event.remove(engine, "begin", self._begin)
        event.remove(engine, "commit", self._commit)

    @staticmethod
    def _changes(conn: Any) -> int:
        return int(conn.connection.dbapi_connection.total_changes)

    def _statement(self, conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "WITH":  # a claim: a CTE that locks, then UPDATE ... RETURNING
            verb = "UPDATE" if " UPDATE " in statement else "SELECT"
        if verb in ("BEGIN", "COMMIT", "ROLLBACK"):  # counted as transactions
            return
        with self._lock:
            # executemany counts once: one round trip to the driver.
            self.all_statements[verb] += 1
            if verb in ("INSERT", "UPDATE", "DELETE"):
                self.statements[verb] += 1

    def _begin(self, conn: Any) -> None:
        with self._lock:
            self.transactions += 1
        self._at_begin[id(conn)] = self._changes(conn)

    def _commit(self, conn: Any) -> None:
        # The commit event fires before the COMMIT itself, after every statement ran.
        delta = self._changes(conn) - self._at_begin.pop(id(conn), 0)
        with self._lock:
            self.rows += delta


def _fill(db: Any, phases: int) -> None:
    from sqlalchemy import insert

    from batchdrain.db.models import PhaseRow, RunRow

    now = utcnow()
    spec = PhaseSpec(command=("python", "-c", "print('hello')")).to_json()
    with db.engine.begin() as conn:
        conn.execute(insert(RunRow), [{"run_id": f"run-{r}", "created_at": now} for r in range(RUNS)])
        for start in range(0, phases, 20_000):
            conn.execute(insert(PhaseRow), [
                {"run_id": f"run-{i % RUNS}", "phase_id": f"phase-{i}", "state": PhaseState.QUEUED.value,
                 "spec": spec, "attempts": 0, "retry_base": 0, "created_at": now, "updated_at": now}
                for i in range(start, min(phases, start + 20_000))
            ])


def _table_rows(db: Any) -> dict[str, int]:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
        return {name: int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()) for name in names}


# -- the two modes ---------------------------------------------------------------------------


def _run_executor(args: argparse.Namespace, executor: KubernetesExecutor, settings: Settings,
                  sink: LogSink) -> dict[str, Any]:
    executor.begin(session_id=SESSION, sink=sink)

    def launch(i: int) -> AttemptLaunch:
        identity = Identity(SESSION, f"run-{i % RUNS}", f"phase-{i}", 1, "postgresql://u:pw@db/x", None)
        spec = PhaseSpec(command=("python", "-c", "print('hello')"))
        return AttemptLaunch(
            identity, spec, spec.command, tuple(identity.env(settings).items()), 600.0, "python:3.11-slim"
        )

    stop = StopSignal()
    classes: Counter[str] = Counter()
    window = threading.BoundedSemaphore(2 * args.parallelism)

    def one(i: int) -> str:
        try:
            return executor.execute(launch(i), stop=stop, on_update=lambda _u: None).failure_class.value
        finally:
            window.release()

    with ThreadPoolExecutor(args.parallelism) as pool:
        futures = []
        for i in range(args.phases):
            window.acquire()
            futures.append(pool.submit(one, i))
            if len(futures) >= 10 * args.parallelism:
                for future in futures:
                    classes[future.result()] += 1
                futures = []
        for future in futures:
            classes[future.result()] += 1
    jobs, pods = executor._watches.reflectors(executor._watches.own or "")
    relists = jobs.relists + pods.relists
    leaks = executor.end()
    return {"outcomes": dict(classes), "leaks": leaks, "relists": relists}


def _run_drain(args: argparse.Namespace, executor: KubernetesExecutor, settings: Settings,
               sink: LogSink, workdir: Path) -> dict[str, Any]:
    # Imported here so that the executor mode's RSS does not include SQLAlchemy.
    from batchdrain.db import Database
    from batchdrain.drain import DrainSession

    url = f"sqlite:///{workdir}/bench.db"
    db = Database(url)
    db.upgrade()
    _fill(db, args.phases)
    counter = _RowCounter()
    counter.install(db.engine)
    session_settings = settings.model_copy(update={"database_url": url})
    session = DrainSession(db=db, sink=sink, executor=executor, settings=session_settings)
    # The session calls executor.end() once every attempt is recorded and before it builds
    # its report: what is spent after that is the report's (reading back N attempts,
    # rendering and storing them), a cost per session rather than per attempt.
    at_end: dict[str, float] = {}
    end = executor.end

    def end_and_mark() -> list[str]:
        at_end["cpu"] = time.process_time()
        at_end["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return end()

    executor.end = end_and_mark  # type: ignore[method-assign]
    outcome = session.run()
    report_cpu = time.process_time() - at_end["cpu"]
    counter.remove(db.engine)
    tables = _table_rows(db)
    failed = _failed_examples(db)
    db.dispose()
    return {
        "outcomes": dict(outcome.report.get("counts", {}).get("by_class", {}) or {}),
        "succeeded_phases": _complete_phases(url),
        "leaks": outcome.leaks,
        "rows_written": counter.rows,
        "statements": dict(counter.statements),
        "all_statements": dict(counter.all_statements),
        "transactions": counter.transactions,
        "table_rows": tables,
        "failed_examples": failed,
        "peak_rss_mb_before_report": at_end["rss_mb"],
        "report_cpu_s": report_cpu,
    }


def _failed_examples(db: Any) -> list[str]:
    """The first attempts that did not succeed, with their message: the database goes with the run."""
    from sqlalchemy import text

    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT phase_id, failure_class, message FROM attempts "
                                 "WHERE failure_class != 'succeeded' ORDER BY id LIMIT 5")).all()
    return [f"{r.phase_id}: {r.failure_class}: {r.message}" for r in rows]


def _complete_phases(url: str) -> int:
    from sqlalchemy import text

    from batchdrain.db import Database

    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM phases WHERE state = 'COMPLETE'")).scalar_one())
    finally:
        db.dispose()


def _print_figures(figures: dict[str, Any], *, no_split: bool) -> None:
    """The figures of one run as the lines RESULTS.md quotes."""
    n, wall = figures["phases"], figures["wall_s"]
    print(f"mode:              {figures['mode']}: {n} phases at parallelism {figures['parallelism']}"
          f" ({figures['log_mode']} logs, {figures['sink']} sink, pods run {figures['run_seconds']:g} s)")
    print(f"outcomes:          {figures['outcomes']}; succeeded {figures['succeeded']}")
    print(f"leaks:             {len(figures['leaks'])}")
    print(f"wall:              {wall:.2f} s ({figures['phases_per_s']:.0f} phases/s)")
    total, controller, fake = (figures[f"cpu_{part}_ms_per_phase"] for part in ("total", "controller", "fake"))
    if no_split:
        print(f"CPU per phase:     {total:.3f} ms total, fake included (target <= 2 ms)")
    else:
        print(f"CPU per phase:     {total:.3f} ms total = {controller:.3f} ms controller"
              f" + {fake:.3f} ms fake (target: controller <= 2 ms)")
    print(f"peak RSS:          {figures['peak_rss_mb']:.1f} MB (target < 150 MB; P = 1,000: <= 300 MB)")
    print(f"peak threads:      {figures['peak_threads_active']} (threading), {figures['peak_threads_kernel']}"
          f" (kernel); at the peak {figures['peak_threads_by_kind']}")
    print("GC per phase:      " + ", ".join(f"gen{g} {ms:.3f} ms" for g, ms in enumerate(figures["gc_ms_per_phase"])))
    print(f"API retries:       {figures['api_retries']}")
    if figures["mode"] == "drain":
        statements = figures["statements"]
        print(f"end of session:    {figures['report_cpu_s']:.2f} s CPU (leak audit, report); peak RSS before it"
              f" {figures['peak_rss_mb_before_report']:.1f} MB")
        print(f"DB rows written:   {figures['rows_written'] / n:.2f} per phase"
              f" in {sum(statements.values()) / n:.2f} write statements per phase {statements}")
        every = figures["all_statements"]
        print(f"DB per phase:      {figures['transactions'] / n:.2f} transactions, {sum(every.values()) / n:.2f}"
              f" statements {every} (the session's, report included; BEGIN/COMMIT not counted)")
        print(f"rows in tables:    {figures['table_rows']}")
        for line in figures["failed_examples"]:
            print(f"not succeeded:     {line}")


def _fake(args: argparse.Namespace, meter: FakeMeter) -> tuple[FakeKube, PodClock | None]:
    """The fake API server; with ``--run-seconds``, the clock that ends its pods."""
    fake = FakeKube(split_streams=not args.combined, max_history=max(2000, 4 * args.parallelism))
    if args.run_seconds <= 0:
        script = (Schedule(), Start(), Out(b"hello from the phase\n"), Err(b"a warning\n"), Exit(0))
        fake.script_for = lambda _job: script
        return fake, None
    clock = PodClock(fake, args.run_seconds, None if args.no_split else meter)
    running = (Schedule(), Start(), Out(b"hello from the phase\n"), Hang())

    def script_for(job: Any) -> Any:
        clock.schedule(job["metadata"]["name"])
        return running

    fake.script_for = script_for
    return fake, clock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=100)
    parser.add_argument("--mode", choices=("executor", "drain"), default="executor")
    parser.add_argument("--sink", choices=("null", "file"), default="null")
    parser.add_argument("--combined", action="store_true", help="cluster without split log streams")
    parser.add_argument("--run-seconds", type=float, default=0.0,
                        help="each pod runs this long (log follows open) before its last line and exit;"
                             " 0: the whole script at once, inside create_job")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-split", action="store_true",
                        help="do not time the fake's calls (total CPU only, without the meter's own cost)")
    args = parser.parse_args()

    settings = Settings(job_create_rate=1e9, parallelism=args.parallelism)
    meter = FakeMeter()
    fake, clock = _fake(args, meter)
    seam = fake if args.no_split else MeteredKube(fake, meter)
    api = RetryingKubeApi(seam, settings)  # type: ignore[arg-type]
    executor = KubernetesExecutor(api, settings)
    tmp = tempfile.TemporaryDirectory(prefix="bd-bench-")
    workdir = Path(tmp.name)
    sink: LogSink = NullSink() if args.sink == "null" else FileLogSink(workdir / "logs")

    gc_timer = _GcTimer()
    gc.callbacks.append(gc_timer)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadSampler() as threads:
        if args.mode == "executor":
            figures = _run_executor(args, executor, settings, sink)
            succeeded = figures["outcomes"].get("succeeded", 0)
        else:
            figures = _run_drain(args, executor, settings, sink, workdir)
            succeeded = figures["succeeded_phases"]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gc.callbacks.remove(gc_timer)
    if clock is not None:
        clock.stop()
    figures.update(threads.figures())
    fake_cpu = 0.0 if args.no_split else meter.seconds
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    n = args.phases
    figures.update({
        "mode": args.mode, "phases": n, "parallelism": args.parallelism, "log_mode": executor.log_mode.value,
        "sink": args.sink, "wall_s": wall, "phases_per_s": n / wall, "cpu_total_ms_per_phase": cpu / n * 1000,
        "cpu_fake_ms_per_phase": fake_cpu / n * 1000, "cpu_controller_ms_per_phase": (cpu - fake_cpu) / n * 1000,
        "peak_rss_mb": peak_mb, "api_retries": api.retries, "succeeded": succeeded,
        "gc_ms_per_phase": [s / n * 1000 for s in gc_timer.seconds], "run_seconds": args.run_seconds,
    })
    _print_figures(figures, no_split=args.no_split)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    rss_target = 300 if args.parallelism >= 1000 else 150
    ok = (cpu - fake_cpu) / n <= 0.002 and peak_mb < rss_target and succeeded == n
    return 0 if ok and not figures["leaks"] else 1


if __name__ == "__main__":
    sys.exit(main())
