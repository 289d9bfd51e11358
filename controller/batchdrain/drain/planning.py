"""What a session would run now: the settings as selection options, and the plan read page by page.

Kept apart from the session loop because ``--dry-run`` and the benchmarks plan
without running anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batchdrain.db import Database
from batchdrain.domain import utcnow
from batchdrain.forecast import DurationHistory, Forecast
from batchdrain.selection import Plan, PlanTally, SelectionOptions, check_run_filter, plan
from batchdrain.settings import Settings

# Candidates read per page when the session has no batch size: a large backlog is
# drained page after page, each read costing the same whatever the backlog's size.
PAGE = 10_000


def selection_options(settings: Settings, *, now: dt.datetime | None = None) -> SelectionOptions:
    return SelectionOptions(
        run_ids=tuple(settings.run_id), batch_size=settings.batch_size,
        max_attempts=settings.max_attempts, skip_runs_with_queued=settings.skip_runs_with_queued,
        include_parked=settings.include_parked, now=now or utcnow(),
    )


@dataclass(frozen=True)
class DryRun:
    """What ``drain --dry-run`` prints: the session's first page, and a tally of the rest."""

    first_page: Plan
    tally: PlanTally
    forecast: Forecast


def make_plan(db: Database, settings: Settings, *, exclude_session: str | None = None,
              now: dt.datetime | None = None) -> Plan:
    """The page of the backlog a session with these settings would run next.

    A session reads only candidates, a page at a time, so that its cost does not grow
    with the backlog.
    """
    if settings.run_id:
        check_run_filter(settings.run_id, db.known_runs())
    options = selection_options(settings, now=now)
    snapshot = db.candidates(run_ids=settings.run_id, limit=settings.batch_size or PAGE,
                             max_attempts=settings.max_attempts,
                             skip_runs_with_queued=settings.skip_runs_with_queued,
                             include_parked=settings.include_parked, exclude_session=exclude_session,
                             now=options.now)
    return plan(snapshot, options)


def dry_run(db: Database, settings: Settings, *, shown: int = 200) -> DryRun:
    """The first page a session would run, and every phase of the filtered runs counted.

    The whole backlog is walked once, page by page and without specs, into a tally of
    counts and the first ``shown`` skips, and a forecast of how long the phases that would
    run take at ``--parallelism``: a dry run of a million phases stays small.
    """
    now = utcnow()
    first_page = make_plan(db, settings, now=now)
    queued = db.undeclared_queued(settings.run_id or None)
    per_run, overall = db.duration_medians()
    forecast = Forecast(parallelism=settings.parallelism,
                        history=DurationHistory(run_medians=per_run, overall_median=overall))
    tally = PlanTally(options=selection_options(settings, now=now), queued_per_run=queued,
                      selected=frozenset(s.phase.key for s in first_page.selected), shown=shown, forecast=forecast)
    for standing in db.standings(settings.run_id or None, with_durations=True):
        tally.add(standing, standing.past_seconds)
    return DryRun(first_page=first_page, tally=tally, forecast=forecast)
