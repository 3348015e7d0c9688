"""``agentdeck workflows watch``: add, list and remove a workflow's watchpoints (``engine.watch``).

    agentdeck workflows watch ID --when 'node check runs >= 2' [--task TASK] [--name NAME]   prints the new id
    agentdeck workflows watch ID --list [--json]
    agentdeck workflows watch ID --remove WATCHPOINT_ID

Carried out by the engine running the workflow (its control socket, or a control request on a server database),
else here on the stored workflow, which keeps it for when it is resumed.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tui.cli._common import DbOption, print_json
from tui.cli.commands_admin import IdArg, JsonFlag, control, workflows


def _bad(message: str) -> typer.Exit:
    print(f"agentdeck: {message}", file=sys.stderr)
    return typer.Exit(2)


def check_expression(expr: str, flag: str = "--when") -> None:
    """A bad expression is told here, with a caret under the column, before any engine is reached (exit 2)."""
    from engine.spec.watch_expr import WatchSyntaxError, parse_watch

    try:
        parse_watch(expr)
    except WatchSyntaxError as exc:
        lines = expr.split("\n")
        shown = lines[exc.line - 1] if 0 < exc.line <= len(lines) else expr
        print(f"agentdeck: {flag}: {exc}\n  {shown}\n  {' ' * (exc.column - 1)}^", file=sys.stderr)
        raise typer.Exit(2) from None


def register() -> None:
    """Add ``watch`` to the ``workflows`` group (``tui.cli.commands_admin``)."""
    workflows.command("watch")(workflows_watch)


def workflows_watch(
    workflow_id: IdArg,
    when: Annotated[
        str | None,
        typer.Option("--when", metavar="EXPR", help="Pause the workflow when EXPR holds, e.g. 'cost_usd > 0.50'."),
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="Watch only this task's events.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the watchpoint.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the workflow's watchpoints.")] = False,
    remove: Annotated[
        str | None, typer.Option("--remove", metavar="WATCHPOINT_ID", help="Remove a watchpoint.")
    ] = None,
    json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Watchpoints: pause the workflow when a condition on its events holds (budget, time, loops, output, failures).

    EXPR: cost_usd > 0.50 | tokens > 200k | running > 5m | tool_repeats >= 3 | node NAME runs >= 2 |
    output ~ "REGEX" | failures >= 3 within 10m | retries >= 2 within 1m, combined with and, or, ( ).
    """
    chosen = [flag for flag, given in (("--when", when), ("--list", list_), ("--remove", remove)) if given]
    if len(chosen) != 1:
        raise _bad("workflows watch: give one of --when EXPR, --list or --remove WATCHPOINT_ID")
    if remove is not None:
        result, code = control("watch_remove", db, workflow=workflow_id, watchpoint=remove)
        print(result)
        raise typer.Exit(code)
    if when is not None:
        check_expression(when)
        result, code = control("watch_add", db, workflow=workflow_id, when=when, task=task, name=name)
        print(result)  # the new watchpoint's id
        raise typer.Exit(code)
    found, _ = control("watch_list", db, workflow=workflow_id)
    if json:
        print_json(found)
        return
    _print_list(workflow_id, found)


def _print_list(workflow_id: str, found: list[dict[str, Any]]) -> None:
    if not found:
        print(f"workflow {workflow_id} has no watchpoints — add one with: agentdeck workflows watch ID --when EXPR")
        return
    print(f"{'ID':<16} {'FROM':<5} {'TASK':<16} {'HITS':>4}  WHEN")
    for w in found:
        label = w["when"] + (f"  ({w['name']})" if w.get("name") else "")
        print(f"{w['id']:<16} {w['origin']:<5} {w.get('task') or '-':<16} {w['triggered']:>4}  {label}")
