"""Commands over stored state and running workflows: workflows, checkpoints, memory."""

from __future__ import annotations

import json as jsonlib
import sys
from typing import Annotated, Any

import typer

from tui.cli._common import DbOption, fail, parse_pairs, print_json

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
IdArg = Annotated[str, typer.Argument(metavar="ID")]

workflows = typer.Typer(help="List, inspect and control workflows.", no_args_is_help=True)
checkpoints = typer.Typer(help="Checkpoints of a workflow (rollback targets).", no_args_is_help=True)
memory = typer.Typer(help="What agents remembered (vector search).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(workflows, name="workflows")
    app.add_typer(checkpoints, name="checkpoints")
    app.add_typer(memory, name="memory")


def control(op: str, db_url: str | None = None, **args: Any) -> tuple[Any, int]:
    """`tui.cli.control.control`, imported when a command runs: it brings in the engine, which takes seconds."""
    from tui.cli.control import control as run_control

    return run_control(op, db_url, **args)


def _say(result: Any, code: int) -> None:
    if result:
        print(result)
    raise typer.Exit(code)


@workflows.command("list")
def workflows_list(json: JsonFlag = False, db: DbOption = None) -> None:
    """Workflows, newest first."""
    found, _ = control("list", db)
    if json:
        print_json(found)
        return
    if not found:
        print("no workflows yet — start one with: agentdeck run FILE")
        return
    print(f"{'ID':<16} {'STATUS':<10} {'CREATED':<19}  NAME")
    for w in found:
        crashed = w.get("resumable") and w["status"] != "stopped"
        status = w["status"] + ("*" if crashed else "")
        print(f"{w['id']:<16} {status:<10} {w['created_at'][:19].replace('T', ' ')}  {w['name']}")
    if any(w["status"] == "stopped" for w in found):
        print("\nstopped: its dashboard was closed while it ran; continue it with `agentdeck resume ID`")
    if any(w.get("resumable") and w["status"] != "stopped" for w in found):
        print("\n* its engine stopped unexpectedly (crash or kill): continue it with `agentdeck resume ID`")


@workflows.command("show")
def workflows_show(workflow_id: IdArg, json: JsonFlag = False, db: DbOption = None) -> None:
    """A workflow with its tasks."""
    found, _ = control("show", db, workflow=workflow_id)
    if json:
        print_json(found)
        return
    print(f"{found['id']}  {found['name']}  [{found['status']}]" + ("  (resumable)" if found.get("resumable") else ""))
    if found.get("error"):
        print(f"  error: {found['error']}")
    origin = found.get("diverged_from")
    if origin:
        at = f"checkpoint {origin['checkpoint']}" if origin.get("checkpoint") else "its start (no checkpoint yet)"
        print(f"  diverged from {origin['workflow']} at event {origin['seq']}, from {at}")
    print(f"  {'TASK':<24} {'AGENT':<14} {'STATUS':<10} {'TRIES':>5}  DETAIL")
    for t in found["tasks"]:
        detail = t.get("error") or ""
        print(f"  {t['key']:<24} {t['agent']:<14} {t['status']:<10} {t['attempts']:>5}  {detail[:60]}")


@workflows.command("pause")
def workflows_pause(workflow_id: IdArg, db: DbOption = None) -> None:
    """Pause: no new task starts; running processes are frozen, agents hold at their next step."""
    _say(*control("pause", db, workflow=workflow_id))


@workflows.command("resume")
def workflows_resume(workflow_id: IdArg, db: DbOption = None) -> None:
    """Resume a paused workflow (a stopped one is continued from its last checkpoint, here)."""
    _say(*control("resume", db, workflow=workflow_id))


@workflows.command("cancel")
def workflows_cancel(workflow_id: IdArg, db: DbOption = None) -> None:
    """Cancel: stop running work for real (process trees killed); downstream tasks are skipped."""
    _say(*control("cancel", db, workflow=workflow_id))


@workflows.command("retry")
def workflows_retry(
    workflow_id: IdArg,
    task: Annotated[str, typer.Option("--task", help="The task to run again.")],
    db: DbOption = None,
) -> None:
    """Run one task again with its upstream outputs as they are."""
    _say(*control("retry", db, workflow=workflow_id, task=task))


@workflows.command("rollback")
def workflows_rollback(
    workflow_id: IdArg,
    to: Annotated[str, typer.Option("--to", metavar="CHECKPOINT_ID", help="Checkpoint to return to.")],
    db: DbOption = None,
) -> None:
    """Return the workflow to a checkpoint and run what came after it again; history is kept."""
    _say(*control("rollback", db, workflow=workflow_id, checkpoint=to))


def json_or_text(text: str) -> Any:
    """A value given on the command line: JSON when it parses (true, 3, {"a": 1}), else the text itself."""
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text


@workflows.command("approve")
def workflows_approve(
    workflow_id: IdArg,
    task: Annotated[str, typer.Option("--task", help="The graph task waiting for an answer.")],
    value: Annotated[
        str | None, typer.Option("--value", help="The answer (JSON or text); default: yes (true).")
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Answer no (false).")] = False,
    db: DbOption = None,
) -> None:
    """Answer a graph task's approval prompt (its interrupt()); the graph resumes with the answer."""
    answer: Any = True if value is None else json_or_text(value)
    _say(*control("approve", db, workflow=workflow_id, task=task, value=answer, deny=deny))


@workflows.command("history")
def workflows_history(
    workflow_id: IdArg,
    task: Annotated[str, typer.Option("--task", help="A graph task.")],
    json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """A graph task's checkpoint history (time travel targets), newest first."""
    found, _ = control("history", db, workflow=workflow_id, task=task)
    if json:
        print_json(found)
        return
    print(f"{'STEP':>4}  {'CHECKPOINT':<38} {'SOURCE':<7} {'RAN':<16} {'NEXT':<16} STATE")
    for h in found:
        ran, nxt = ",".join(h["ran"]) or "-", ",".join(h["next"]) or "(end)"
        print(f"{h['step']:>4}  {h['checkpoint']:<38} {h['source']:<7} {ran:<16} {nxt:<16} {h['summary'][:60]}")


@workflows.command("fork")
def workflows_fork(
    workflow_id: IdArg,
    task: Annotated[str, typer.Option("--task", help="A graph task.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="The graph checkpoint to go back to.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Edit a state value (JSON or text).")
    ] = None,
    keep_downstream: Annotated[
        bool,
        typer.Option("--keep-downstream", help="Do not re-run the completed tasks after it (they keep their outputs)."),
    ] = False,
    db: DbOption = None,
) -> None:
    """Time travel: fork a graph task at a checkpoint (optionally editing its state) and run only what follows;
    the completed tasks downstream of it run again with its new output (unless --keep-downstream)."""
    values: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            print(f"agentdeck: --set {item!r}: expected KEY=VALUE", file=sys.stderr)
            raise typer.Exit(2)
        values[key] = json_or_text(raw)
    _say(*control("fork", db, workflow=workflow_id, task=task, checkpoint=checkpoint, values=values or None,
                  downstream=not keep_downstream))  # fmt: skip


@checkpoints.command("list")
def checkpoints_list(workflow_id: IdArg, json: JsonFlag = False, db: DbOption = None) -> None:
    """A workflow's checkpoints, oldest first."""
    found, _ = control("checkpoints", db, workflow=workflow_id)
    if json:
        print_json(found)
        return
    if not found:
        print(f"workflow {workflow_id} has no checkpoints yet")
        return
    from db.models import Checkpoint
    from engine.checkpoints import state_at

    # A checkpoint stores what changed since the one before: DONE counts the tasks completed at that moment, as
    # the dashboard's timeline does, not the one the delta names.
    history = [Checkpoint.model_validate(c) for c in found]
    # SEQ: the workflow's last event at the checkpoint (`workflows diverge --at SEQ` starts from there).
    print(f"{'#':>3}  {'ID':<16} {'CREATED':<19}  {'DONE':>4}  {'SEQ':>5}  REASON")
    for c in found:
        states, _ = state_at(history, c["number"])
        done = sum(1 for s in states.values() if s.get("status") == "completed")
        created = c["created_at"][:19].replace("T", " ")
        print(f"{c['number']:>3}  {c['id']:<16} {created}  {done:>4}  {c['event_seq']:>5}  {c['reason']}")


@memory.command("add")
def memory_add(
    text: Annotated[str, typer.Argument(metavar="TEXT")],
    agent: Annotated[str, typer.Option("--agent", help="Whose memory this is.")],
    memory_type: Annotated[
        str, typer.Option("--type", help="short_term (forgotten after a day), long_term or checkpoint.")
    ] = "long_term",
    meta: Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata; repeatable.")] = None,
    json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Remember a text for an agent; agents and `memory search` find it by meaning."""
    try:
        metadata = parse_pairs(meta, "--meta")
    except ValueError as exc:
        fail(str(exc))
    added, _ = control("memory_add", db, agent=agent, content=text, memory_type=memory_type, metadata=metadata)
    if json:
        print_json(added)
        return
    print(f"remembered {added['id']} ({added['memory_type']}) for {added['agent']}")


@memory.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(metavar="QUERY")],
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's memories.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many results.")] = 5,
    memory_type: Annotated[str | None, typer.Option("--type", help="Only memories of this type.")] = None,
    json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Search what agents remembered, by meaning, best first (rolled-back and expired memories are left out)."""
    found, _ = control("memory_search", db, query=query, k=k, agent=agent, memory_type=memory_type)
    if json:
        print_json(found)
        return
    if not found:
        print("no memories found" + ("" if agent is None else f" for agent {agent}"))
        return
    for hit in found:
        where = f"{hit['workflow']}/{hit['task']}#{hit['attempt']}" if hit.get("task") else "-"
        created = hit["created_at"][:19].replace("T", " ")
        print(f"{hit['score']:.2f}  {hit['memory_type']:<10} {hit['agent']:<12} {created}  {where}")
        print(f"      {hit['content'][:300]}")
