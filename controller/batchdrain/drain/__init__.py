"""The drain loop: one session from selection to its final report.

``session`` is the loop itself, ``planning`` what a session would run now (also
``--dry-run``), ``adoption`` what other sessions left open (adopt now, or wait),
``orphans`` taking it over (and closing dead sessions' rows), ``launches`` what an
attempt runs with, ``recording`` each attempt's end (released, parked, or not charged), ``reporting`` the
end of a session (report, identity checks, files), ``observer`` what a front end hears.
"""

from batchdrain.drain.observer import DrainObserver, SilentObserver
from batchdrain.drain.planning import PAGE, DryRun, dry_run, make_plan, selection_options
from batchdrain.drain.session import DrainSession, SessionOutcome, masked_settings
from batchdrain.report import REPORT_SCHEMA

__all__ = [
    "PAGE",
    "REPORT_SCHEMA",
    "DrainObserver",
    "DrainSession",
    "DryRun",
    "SessionOutcome",
    "SilentObserver",
    "dry_run",
    "make_plan",
    "masked_settings",
    "selection_options",
]
