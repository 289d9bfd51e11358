"""The forecast (issue 18.5), pure: what each phase is estimated from, and the wall time."""

from __future__ import annotations

from batchdrain.domain import Phase, PhaseSpec, PhaseState
from batchdrain.forecast import Basis, DurationHistory, Forecast, human
from batchdrain.selection import PlanTally, SelectionOptions

HISTORY = DurationHistory(run_medians={"nightly": 30.0}, overall_median=10.0)


def test_each_phase_is_estimated_from_its_own_past_else_its_run_else_everything():
    assert HISTORY.estimate("nightly", 42.0) == (42.0, Basis.PHASE)
    assert HISTORY.estimate("nightly", None) == (30.0, Basis.RUN)
    assert HISTORY.estimate("new-run", None) == (10.0, Basis.OVERALL)
    assert DurationHistory().estimate("new-run", None) == (None, Basis.NONE)


def test_the_wall_time_is_the_work_over_the_parallelism_or_the_longest_phase():
    forecast = Forecast(parallelism=4, history=HISTORY)
    for _ in range(8):
        forecast.add("nightly", None)  # 8 x 30 s
    assert forecast.seconds == 60.0
    forecast.add("nightly", 600.0)  # one long phase bounds it from below
    assert forecast.seconds == 600.0
    wide = Forecast(parallelism=100, history=HISTORY)
    wide.add("x", 5.0)
    wide.add("y", None)
    assert wide.seconds == 10.0  # not 15 / 100
    line = forecast.line()
    assert line.startswith("forecast: ~10m 00s to drain 9 phase(s) at parallelism 4 (work 14m 00s, longest 10m 00s)")
    assert line.endswith("estimated 1 by their own past attempts, 8 by their run's median")


def test_no_history_says_so_and_phases_without_one_are_counted_apart():
    none = Forecast(parallelism=2, history=DurationHistory())
    none.add("r", None)
    assert none.seconds is None and none.line() == "forecast: no past attempts to estimate 1 phase(s) from"
    assert Forecast(parallelism=2, history=DurationHistory()).line() == "forecast: nothing to drain"
    mixed = Forecast(parallelism=1, history=DurationHistory())
    mixed.add("r", 3.0)
    mixed.add("r", None)
    assert mixed.seconds == 3.0 and "1 with no history (not counted)" in mixed.line()


def test_human_durations():
    assert [human(s) for s in (12.34, 250, 7500, 200_000)] == ["12.3s", "4m 10s", "2h 05m", "2d 07h"]


def test_the_tally_forecasts_only_what_would_run():
    spec = PhaseSpec(command=("true",))
    backlog = [Phase(run_id="r", phase_id=f"p{i}", state=PhaseState.QUEUED, attempts=0, spec=spec, created_seq=i)
               for i in range(5)]
    backlog.append(Phase(run_id="r", phase_id="done", state=PhaseState.COMPLETE, attempts=1, spec=spec,
                         created_seq=9))
    forecast = Forecast(parallelism=2, history=HISTORY)
    tally = PlanTally(options=SelectionOptions(batch_size=3), queued_per_run={"r": 5},
                      selected=frozenset({("r", "p0"), ("r", "p1"), ("r", "p2")}), forecast=forecast)
    for phase in backlog:
        tally.add(phase, 4.0 if phase.phase_id == "p0" else None)
    assert forecast.phases == 3
    assert forecast.by_basis == {Basis.PHASE: 1, Basis.OVERALL: 2}
    assert forecast.total_seconds == 24.0
