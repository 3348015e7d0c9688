"""Commands over stored state: workflows, checkpoints, memory."""

from __future__ import annotations

from typing import Annotated

import typer

from db import connect
from db.models import Workflow
from db.stores import Stores
from tui.cli._common import not_yet, print_json, run_async

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (mem://, surrealkv://PATH, ws://HOST:PORT). Env: AGENTDECK_DB."),
]

workflows = typer.Typer(help="List, inspect and control workflows.", no_args_is_help=True)
checkpoints = typer.Typer(help="Checkpoints of a workflow (rollback targets).", no_args_is_help=True)
memory = typer.Typer(help="What agents remembered (vector search).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(workflows, name="workflows")
    app.add_typer(checkpoints, name="checkpoints")
    app.add_typer(memory, name="memory")


def _workflow_json(workflow: Workflow) -> dict[str, object]:
    return workflow.model_dump(mode="json", exclude={"spec"})


@workflows.command("list")
def workflows_list(json: JsonFlag = False, db: DbOption = None) -> None:
    """Workflows, newest first."""

    async def work() -> list[Workflow]:
        async with connect(db) as database:
            return await Stores.over(database).workflows.list()

    found = run_async(work)
    if json:
        print_json([_workflow_json(w) for w in found])
        return
    if not found:
        print("no workflows yet — start one with: agentdeck run FILE")
        return
    print(f"{'ID':<18} {'STATUS':<10} {'CREATED':<20} NAME")
    for w in found:
        print(f"{w.id:<18} {w.status.value:<10} {w.created_at:%Y-%m-%d %H:%M:%S}  {w.name}")


@workflows.command("show")
def workflows_show(workflow_id: Annotated[str, typer.Argument(metavar="ID")], json: JsonFlag = False) -> None:
    """A workflow with its tasks."""
    not_yet("workflows show")


@workflows.command("pause")
def workflows_pause(workflow_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Pause: no new task starts; running work is frozen at its next step boundary."""
    not_yet("workflows pause")


@workflows.command("resume")
def workflows_resume(workflow_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Resume a paused workflow."""
    not_yet("workflows resume")


@workflows.command("cancel")
def workflows_cancel(workflow_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel: stop running work for real; downstream tasks are skipped."""
    not_yet("workflows cancel")


@workflows.command("retry")
def workflows_retry(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    task: Annotated[str, typer.Option("--task", help="The task to run again.")],
) -> None:
    """Run one task again with its upstream outputs as they are."""
    not_yet("workflows retry")


@workflows.command("rollback")
def workflows_rollback(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    to: Annotated[str, typer.Option("--to", metavar="CHECKPOINT_ID", help="Checkpoint to return to.")],
) -> None:
    """Return the workflow to a checkpoint; history is kept."""
    not_yet("workflows rollback")


@checkpoints.command("list")
def checkpoints_list(workflow_id: Annotated[str, typer.Argument(metavar="ID")], json: JsonFlag = False) -> None:
    """A workflow's checkpoints, oldest first."""
    not_yet("checkpoints list")


@memory.command("add")
def memory_add(
    text: Annotated[str, typer.Argument(metavar="TEXT")],
    agent: Annotated[str, typer.Option("--agent", help="Whose memory this is.")],
    memory_type: Annotated[str, typer.Option("--type", help="Memory type.")] = "long_term",
    meta: Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata; repeatable.")] = None,
) -> None:
    """Remember a text for an agent."""
    not_yet("memory add")


@memory.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(metavar="QUERY")],
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's memories.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many results.")] = 5,
    json: JsonFlag = False,
) -> None:
    """Search what agents remembered, by meaning."""
    not_yet("memory search")
