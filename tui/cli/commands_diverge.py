"""``agentdeck workflows diverge``: a new workflow from a moment of another one's history (``Engine.diverge``) — the
command-line twin of ``d`` in a replay or in the checkpoint timeline, and the way to edit a graph task's state there.

    agentdeck workflows diverge ID --at SEQ [--set TASK.KEY=VALUE ...] [--json]

The new workflow has the same spec and starts from the newest checkpoint at or before event ``SEQ``: tasks
completed by then keep their outputs and never run again; a graph task that was running continues from a copy of
its thread at that step, with ``--set`` edits applied through the state's reducers. It prints the new workflow's
id. An engine that holds the database runs it; otherwise this command runs it in the foreground until it ends,
like ``run --headless`` (its exit code is the new workflow's).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tui.cli._common import DbOption
from tui.cli.commands_admin import IdArg, JsonFlag, json_or_text, workflows


def register() -> None:
    """Add ``diverge`` to the ``workflows`` group (``tui.cli.commands_admin``)."""
    workflows.command("diverge")(workflows_diverge)


def edits(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``--set TASK.KEY=VALUE`` items as ``{task: {key: value}}`` (a value is JSON when it parses, else text)."""
    values: dict[str, dict[str, Any]] = {}
    for item in pairs:
        target, sep, raw = item.partition("=")
        task, dot, key = target.partition(".")
        if not sep or not dot or not task or not key:
            print(f"agentdeck: --set {item!r}: expected TASK.KEY=VALUE (a graph task's state key)", file=sys.stderr)
            raise typer.Exit(2)
        values.setdefault(task, {})[key] = json_or_text(raw)
    return values


def workflows_diverge(
    workflow_id: IdArg,
    at: Annotated[int, typer.Option("--at", metavar="SEQ", min=1, help="The event (seq) to start from.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="TASK.KEY=VALUE", help="Edit a running graph task's state (JSON or text)."),
    ] = None,
    json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """A new workflow from the moment of event SEQ of another one: what had completed is carried over."""
    from tui.cli.control import control

    values = edits(set_ or [])
    new_id, code = control("diverge_id", db, foreground_json=json, workflow=workflow_id, at_seq=at,
                           values=values or None)  # fmt: skip
    if new_id:
        print(new_id, file=sys.stderr if json else sys.stdout)  # --json keeps stdout for events
    raise typer.Exit(code)
