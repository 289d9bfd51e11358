"""Metric names follow Prometheus conventions and count what happened."""

from __future__ import annotations

from batchdrain.domain import AttemptResult, FailureClass, LogPointer, RunCounts
from batchdrain.metrics import Metrics


def test_attempts_durations_log_bytes_and_phase_states():
    metrics = Metrics(registry=None)
    result = AttemptResult(failure_class=FailureClass.OOM_KILLED, message="m", exit_code=137,
                           container_seconds=3.0,
                           logs=[LogPointer("stdout", "/x", 100, "h"), LogPointer("stderr", "/y", 7, "h")])
    metrics.record_attempt(result)
    metrics.record_attempt(result)
    metrics.set_phase_counts([RunCounts(queued=2, failed=1), RunCounts(complete=4, failed=1)])
    value = metrics.registry.get_sample_value
    assert value("batchdrain_attempts_total", {"failure_class": "oom_killed"}) == 2
    assert value("batchdrain_attempt_duration_seconds_count") == 2
    assert value("batchdrain_attempt_duration_seconds_sum") == 6.0
    assert value("batchdrain_log_bytes_total", {"stream": "stdout"}) == 200
    assert value("batchdrain_phases", {"state": "FAILED"}) == 2
    assert value("batchdrain_phases", {"state": "COMPLETE"}) == 4
