"""The ``agentdeck`` command line (typer). The command names and flags are a contract: see design.md.

Textual is imported only by the commands that open the dashboard, so headless commands start fast.
"""

from __future__ import annotations

import typer

from tui.cli import (
    commands_admin,
    commands_diverge,
    commands_recorder,
    commands_run,
    commands_watch,
    commands_workers,
)
from tui.cli import replay as replay_command
from tui.cli._common import exit_for

app = typer.Typer(
    name="agentdeck",
    help="A terminal dashboard for multi-agent workflows: watch, pause, cancel, resume and roll back agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
commands_run.register(app)
commands_admin.register(app)
commands_watch.register()
commands_diverge.register()
commands_recorder.register(app)
commands_workers.register(app)
replay_command.register(app)


def main() -> None:
    """Console-script entry point: errors we know (bad settings, bad input, Ctrl-C) end with their exit code and one
    line, wherever in a command they happen."""
    try:
        app()
    except (Exception, KeyboardInterrupt) as exc:
        exit_code = None
        try:
            exit_for(exc)
        except typer.Exit as known:
            exit_code = known.exit_code
        raise SystemExit(exit_code) from None
