"""What a session would run now: the settings as selection options, and the plan read page by page.

Kept apart from the session loop because ``--dry-run`` and the benchmarks plan
without running anything.
"""

from __future__ import annotations

from batchdrain.db import Database
from batchdrain.selection import Plan, SelectionOptions, check_run_filter, plan
from batchdrain.settings import Settings

# Candidates read per page when the session has no batch size: a large backlog is
# drained page after page, each read costing the same whatever the backlog's size.
PAGE = 10_000


def selection_options(settings: Settings) -> SelectionOptions:
    return SelectionOptions(
        run_ids=tuple(settings.run_id), batch_size=settings.batch_size,
        max_attempts=settings.max_attempts, skip_runs_with_queued=settings.skip_runs_with_queued,
        include_parked=settings.include_parked,
    )


def make_plan(db: Database, settings: Settings, *, full: bool = False, exclude_session: str | None = None) -> Plan:
    """The plan a session with these settings would run now.

    ``full`` reads every phase of the filtered runs so that --dry-run can give a reason
    for each one left out; a session reads only candidates, a page at a time.
    """
    if settings.run_id:
        check_run_filter(settings.run_id, db.known_runs())
    options = selection_options(settings)
    if full:
        return plan(db.phases(settings.run_id or None), options)
    snapshot = db.candidates(run_ids=settings.run_id, limit=settings.batch_size or PAGE,
                             max_attempts=settings.max_attempts,
                             skip_runs_with_queued=settings.skip_runs_with_queued,
                             include_parked=settings.include_parked, exclude_session=exclude_session)
    return plan(snapshot, options)
