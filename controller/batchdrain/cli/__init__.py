"""The ``batchdrain`` command line (also ``kubectl batchdrain``).

Every ``Settings`` field becomes a ``--flag`` automatically (``flags``), so an option
can never exist as a ``BATCHDRAIN_*`` variable and be missing on the command line.
Each command group is a module of ``commands`` joined here with ``add_typer``;
``wiring`` opens what the commands use and ``render`` prints.
Exit codes: 0 the command did its job (a drain ran, even if phases failed); 1 the
controller itself failed or left Jobs behind; 2 bad usage or bad input.
"""

from __future__ import annotations

import os

import typer
from rich.markup import escape

from batchdrain.cli.commands import backlog, db, drain, sessions
from batchdrain.cli.render import err
from batchdrain.cli.wiring import resources
from batchdrain.db import DatabaseUnavailable
from batchdrain.domain import BadInput
from batchdrain.identity import mask_secrets
from batchdrain.preflight import PreflightFailed

app = typer.Typer(
    name="batchdrain", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Drain a backlog of phases: one Kubernetes Job (or local process) per attempt, every attempt recorded.",
)
# Registered in the order ``--help`` lists them: top-level commands first, then the groups.
app.add_typer(backlog.app)
app.add_typer(sessions.app)
app.add_typer(drain.app)
app.add_typer(db.app)
app.add_typer(sessions.sessions_app, name="sessions")
app.add_typer(db.db_app, name="db")


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns every error into a one-line message and a documented exit code."""
    try:
        with resources:
            result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"batchdrain: {exc}")
        return int(getattr(exc, "exit_code", 2))
    except (BadInput, DatabaseUnavailable, PreflightFailed) as exc:
        err.print(f"[red]batchdrain: error:[/] {escape(mask_secrets(str(exc), []))}", soft_wrap=True)
        return 2
    except Exception as exc:
        err.print(f"[red]batchdrain: controller error:[/] {type(exc).__name__}: "
                  f"{escape(mask_secrets(str(exc), []))}", soft_wrap=True)
        if os.environ.get("BATCHDRAIN_DEBUG"):
            raise
        return 1
    return int(result) if isinstance(result, int) else 0


__all__ = ["app", "main"]
