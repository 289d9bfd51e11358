"""Prometheus metrics of a drain (``--metrics-port``).

A ``Metrics`` built with ``registry=None`` uses a private registry, so tests and
library users get working counters without touching the process-global one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from batchdrain.domain import AttemptResult, RunCounts

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# Runs exported one by one in ``batchdrain_run_phases`` (label cardinality).
MAX_RUNS = 200


class Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.attempts = Counter("batchdrain_attempts", "Finished attempts by failure class",
                                ["failure_class"], registry=self.registry)
        self.phases = Gauge("batchdrain_phases", "Phases by state (last refresh)", ["state"],
                            registry=self.registry)
        self.duration = Histogram("batchdrain_attempt_duration_seconds", "Attempt duration",
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self.admission_wait = Histogram("batchdrain_admission_wait_seconds",
                                        "Time a queued Job waited for Kueue's admission",
                                        buckets=DURATION_BUCKETS, registry=self.registry)
        self.running = Gauge("batchdrain_attempts_running", "Attempts (Jobs or processes) alive",
                             registry=self.registry)
        self.log_bytes = Counter("batchdrain_log_bytes", "Log bytes stored", ["stream"],
                                 registry=self.registry)
        self.api_retries = Counter("batchdrain_api_retries", "Retried API server calls",
                                   registry=self.registry)
        self.leaks = Gauge("batchdrain_session_leaks", "Jobs/pods left at the end of the session",
                           registry=self.registry)
        self.run_phases = Gauge("batchdrain_run_phases", "Phases by run and state, for runs with work left "
                                f"(the {MAX_RUNS} with the most queued; last refresh)", ["run_id", "state"],
                                registry=self.registry)

    def record_attempt(self, result: AttemptResult) -> None:
        self.attempts.labels(result.failure_class.value).inc()
        seconds = result.container_seconds if result.container_seconds is not None else result.total_seconds
        if seconds is not None:
            self.duration.observe(seconds)
        if result.admitted_at is not None and result.created_at is not None:
            self.admission_wait.observe(max((result.admitted_at - result.created_at).total_seconds(), 0.0))
        for pointer in result.logs:
            self.log_bytes.labels(pointer.stream).inc(pointer.size_bytes)

    def set_phase_counts(self, counts: Iterable[RunCounts]) -> None:
        totals = RunCounts()
        for c in counts:
            totals = RunCounts(**{k: getattr(totals, k) + v for k, v in c.to_json().items()})
        for state, value in totals.to_json().items():
            self.phases.labels(state.upper()).set(value)

    def set_run_counts(self, counts: Mapping[str, RunCounts]) -> None:
        """Totals by state, and each run with work left (queued, executing or failed) by state.

        Runs are labels: only those with work left, at most ``MAX_RUNS`` (most queued
        first), so that a database of years of finished runs does not become a series each.
        """
        self.set_phase_counts(counts.values())
        self.run_phases.clear()
        busy = [(run, c) for run, c in counts.items() if c.queued or c.executing or c.failed]
        busy.sort(key=lambda item: (-item[1].queued, item[0]))
        for run, c in busy[:MAX_RUNS]:
            for state, value in c.to_json().items():
                self.run_phases.labels(run, state.upper()).set(value)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
