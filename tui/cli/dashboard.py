"""Opening the dashboard: ``demo``, ``run FILE`` and ``ui`` hand the app the database URL; the app paints its first
frame at once and opens the database and engine behind it (``tui.app``), serving the control channels other
terminals use, and closes both when it exits. Here: refusing to draw into something that is not a terminal, and
after the app, reporting a failure to open (exit code 3 and a hint) and the workflows quitting stopped. ``ui`` on a
database another agentdeck holds attaches to that engine (``engine.attached``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tui.cli._common import EXIT_OK, BadInput, db_url_or_default

if TYPE_CHECKING:
    from engine.spec import WorkflowSpec
    from tui.app import AgentDeckApp

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def need_a_terminal() -> None:
    """The dashboard draws on stderr: say so, rather than drawing escape codes into a file or a pipe."""
    if not sys.stderr.isatty():
        raise BadInput(
            "agentdeck: the dashboard draws on stderr, which is not a terminal here (redirected to a file or a "
            "pipe): run it in a terminal, or run a workflow without one with `agentdeck run FILE --headless`"
        )


async def run_dashboard(
    db_url: str | None,
    redis_url: str | None,
    start: WorkflowSpec | None = None,
    variables: Mapping[str, str] | None = None,
) -> int:
    from tui.app import make_app

    url = db_url_or_default(db_url)
    # `ui` attaches to the engine of another process that holds the database; demo and run need their own engine.
    attach = start is None
    app = make_app(
        db_url=url, redis_url=redis_url, serve_controls=True, attach=attach, start=start, variables=variables
    )
    result = await app.run_async()
    return report_after(app, url, result)


def report_after(app: AgentDeckApp, url: str, result: object) -> int:
    """Once the dashboard has exited and the terminal is restored: raise its failure to open, say what it detached
    from and which workflows quitting stopped; the exit code."""
    if app.failure is not None:  # reported now that the terminal is restored (exit code 3 and a hint)
        raise _with_owner_hint(app.failure, url)
    if app.detached_from is not None:
        print(f"agentdeck: detached from the engine of process {app.detached_from}; its workflows go on",
              file=sys.stderr)  # fmt: skip
    for workflow, name in app.stopped:  # closing the engine stopped them: say how to go on
        print(
            f"agentdeck: stopped {name} ({workflow}) while it ran — resume it with `agentdeck resume {workflow}`"
            " or shift+R in the dashboard",
            file=sys.stderr,
        )
    return result if isinstance(result, int) else EXIT_OK


def _with_owner_hint(failure: BaseException, url: str) -> BaseException:
    """A file database held by another agentdeck that serves a control socket: say what does reach it."""
    from db.errors import DatabaseUnavailable
    from engine.private_paths import control_socket_path

    socket = control_socket_path(url)
    if not isinstance(failure, DatabaseUnavailable) or "in use" not in str(failure) or socket is None:
        return failure
    if not socket.exists():
        return failure
    return DatabaseUnavailable(
        f"{failure} (it serves its workflows on {socket})",
        hint=f"`agentdeck ui --db {url}` attaches a dashboard to that engine, and `agentdeck workflows list|pause|"
        f"resume|cancel … --db {url}` control its workflows from here; run this once it ends, or point --db "
        "elsewhere",
    )
