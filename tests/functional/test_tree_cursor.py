"""The tree's cursor goes where it is put, even in the frame in which rows above it came or went.

Textual's Tree keeps the cursor as a line number and re-derives the node under it when it lays its lines out
again. Moving the cursor while the lines were stale (a graph task above just got its first node row) laid them out
inside the move, which put the line back on the old node: the row looked selected (``cursor_node``) but Enter acted
on the workflow row (``cursor_line``) and folded it. Seen in CI as a task detail that never opened.

Real parts: the dashboard's ``WorkflowTree`` on an embedded database, fed committed changes as the change feed
feeds it, and Enter pressed with Pilot.
"""

from __future__ import annotations

from textual.app import App, ComposeResult

from db import connect
from db.connection import Database
from db.models import GraphNode, Task, TaskStatus, Workflow, WorkflowStatus
from db.watch import Change
from tests.support.polling import until
from tui.widgets.workflow_tree import WorkflowTree


class TreeApp(App[None]):
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.entered: list[object] = []

    def compose(self) -> ComposeResult:
        yield WorkflowTree(self.db, id="tree")

    def on_tree_node_selected(self, message: WorkflowTree.NodeSelected[object]) -> None:
        self.entered.append(message.node.data)


def change(record: object, key: str) -> Change:
    return Change(table=type(record).__name__.lower(), action="update", id=key, record=record, position=0)


async def test_a_task_selected_as_a_row_above_it_grows_gets_the_enter() -> None:
    async with connect("mem://") as db:
        app = TreeApp(db)
        async with app.run_test(size=(80, 24)) as pilot:
            tree = app.query_one(WorkflowTree)
            workflow = Workflow(name="flow", status=WorkflowStatus.RUNNING)
            tree.apply(change(workflow, workflow.id))
            for key in ("plan", "build"):
                task = Task(workflow=workflow.id, key=key, agent="g", status=TaskStatus.COMPLETED)
                tree.apply(change(task, f"{workflow.id}/{key}"))
            await pilot.pause()
            tree.focus()
            build = tree._node_index[(workflow.id, "build")]
            assert build.line == 2  # the workflow, plan, build
            # In one go, as a frame does: plan's first graph node arrives (plan opens: build moves down a line) and
            # the cursor is put on build.
            node = GraphNode(id=f"{workflow.id}/plan/x", workflow=workflow.id, task="plan",
                             thread=f"{workflow.id}:plan", node="draft", status="completed")  # fmt: skip
            tree.apply(change(node, node.id))
            tree.select_task(workflow.id, "build")
            assert tree.cursor_node is build
            assert tree.cursor_line == build.line == 3, (tree.cursor_line, build.line)
            await pilot.press("enter")
            await until(lambda: app.entered, pilot=pilot)
            assert [(ref.workflow, ref.task) for ref in app.entered] == [(workflow.id, "build")]  # type: ignore[attr-defined]


async def test_a_task_selected_as_its_workflow_row_arrives_keeps_the_cursor() -> None:
    """The dashboard asks for a workflow it just started before its row is there; a task of it selected in the
    frame its row arrives in (by a person, or a banner) keeps the cursor: the workflow asked for earlier does not
    take it back after the refresh. Seen in CI: the selection went back to the workflow, and stayed there."""
    async with connect("mem://") as db:
        app = TreeApp(db)
        async with app.run_test(size=(80, 24)) as pilot:
            tree = app.query_one(WorkflowTree)
            workflow = Workflow(name="flow", status=WorkflowStatus.RUNNING)
            tree.select_workflow(workflow.id)  # not shown yet: selected when its row comes
            tree.apply(change(workflow, workflow.id))
            heat = Task(workflow=workflow.id, key="heat", agent="sh", status=TaskStatus.RUNNING)
            tree.apply(change(heat, f"{workflow.id}/heat"))
            tree.select_task(workflow.id, "heat")
            await pilot.pause()
            await pilot.pause()
            row = tree._node_index[(workflow.id, "heat")]
            assert tree.cursor_node is row and tree.cursor_line == row.line
