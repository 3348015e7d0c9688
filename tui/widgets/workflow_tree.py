"""The workflow tree: workflows → tasks with status, elapsed time and retries → a graph task's node executions.

It is driven only by the database's own change notifications (``db.watch``: CHANGEFEED when embedded, LIVE
SELECT on a server), so it shows what is committed — also for workflows another process runs on the same
database. It loads a snapshot first, from a position taken before the snapshot, so nothing falls in between.
Under a graph task its node executions (``graph_node`` rows: ``✔ plan · step 1 0s``) appear as they start, in the
order they started; a task waiting for a person (an open approval) shows ``✋``.

The three tables are followed as one stream in commit order (``ChangeWatcher.watch_many``): a workflow is
always seen before its tasks and a task before its graph nodes (and a retried task's new thread before that
thread's nodes), so nothing has to wait for its parent here. A workflow older than the snapshot's 50 that
comes back to life (resumed, retried) is listed with its tasks read from the database.

Changes are applied once a frame, not as each arrives: a record changed several times since the last frame is
applied once, at its latest (rows are whole records, so the latest says everything), in the order records first
arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from db.connection import Database
from db.models import GraphNode, Task, Workflow, WorkflowStatus
from db.stores import Stores
from db.watch import Change, watcher_for
from engine.graph.support import default_thread
from tui.status import elapsed, icon

# A person is needed: a task waiting on an approval, a graph node stopped at its interrupt().
WAITING_ICON = "[orange1]✋[/]"
FRAME_S = 0.05  # changes that arrived are applied at most 20 times a second


def status_icon(status: str) -> str:
    """``icon()`` plus the states only graphs have (``waiting`` tasks, ``interrupted`` nodes)."""
    return WAITING_ICON if status in ("waiting", "interrupted") else icon(status)


#: A task row takes its state's colour, so failures and waits stand out in a long list.
ROW_STYLES = {
    "failed": "bold red",
    "cancelled": "red",
    "waiting": "bold yellow",
    "paused": "yellow",
    "retrying": "dark_orange",
    "skipped": "dim",
}
#: At most this much of a failed task's error is shown on its row (the task detail has all of it).
ERROR_CHARS = 60


def task_row(status: str, key: str, agent: str, attempts: int, took: str, error: str | None) -> Text:
    """``✘ test tester ↻2 47s  exit code 1: 2 failed``: the row takes its state's colour, and a failed task shows the
    first line of its error (the task's own text: never read as markup). The replay's tree draws its rows so too."""
    label = Text.from_markup(status_icon(status) + " ")
    label.append(key, style=ROW_STYLES.get(status, ""))
    label.append(f" {agent}", style="dim")
    if attempts > 1:
        label.append(f" ↻{attempts - 1}", style="dark_orange")
    if took:
        label.append(f" {took}", style="dim")
    if status == "failed" and error:
        first = error.strip().splitlines()[0] if error.strip() else ""
        label.append(f"  {first[: ERROR_CHARS - 1] + '…' if len(first) > ERROR_CHARS else first}", style="red")
    return label


@dataclass
class NodeRef:
    workflow: str
    task: str | None = None
    graph_node: str | None = None  # a graph node execution's id (its leaf under the task)


class WorkflowTree(Tree[NodeRef]):
    """Workflows and their tasks, newest workflow first."""

    class Selected(Message):
        """The cursor moved to a workflow or one of its tasks."""

        def __init__(self, workflow: str, task: str | None) -> None:
            super().__init__()
            self.workflow = workflow
            self.task = task

    class Loaded(Message):
        """The first snapshot is on screen."""

    def __init__(self, db: Database, **kwargs: object) -> None:
        super().__init__("workflows", **kwargs)  # type: ignore[arg-type]
        self.db = db
        self.stores = Stores.over(db)
        self.show_root = False
        self.auto_expand = False  # Enter on a task opens its detail (the main screen); on a workflow it toggles
        self.guide_depth = 2
        self.workflows: dict[str, Workflow] = {}
        self.tasks: dict[str, dict[str, Task]] = {}
        self.graph_nodes: dict[str, GraphNode] = {}
        self._node_index: dict[tuple[str, str | None], TreeNode[NodeRef]] = {}
        #: Moves on every frame that changed what the tree shows; ``on_change`` is called then (the main screen's
        #: top bar reads the tree's state and redraws in the same frame, so the two never disagree).
        self.version = 0
        self.on_change: Callable[[], None] | None = None
        self._graph_leaves: dict[str, TreeNode[NodeRef]] = {}
        self._arrived: dict[tuple[str, str], Change] = {}  # (table, id) → latest change, applied next frame
        self._to_select: str | None = None  # a workflow asked to be selected before its row arrived
        self._loaded = False  # the first snapshot is shown: workflows arriving from now on come from the feed

    def on_mount(self) -> None:
        self.load_and_follow()
        self.set_interval(1.0, self._tick)
        self.set_interval(FRAME_S, self._apply_arrived)

    @work(exclusive=True, group="workflow-tree", exit_on_error=False, description="Following the database.")
    async def load_and_follow(self) -> None:
        watcher = watcher_for(self.db)
        position = await watcher.position()
        for workflow in reversed(await self.stores.workflows.list(limit=50)):
            self._apply_workflow(workflow)
            for task in await self.stores.tasks.list(workflow.id):
                self._apply_task(task)
            for graph_node in await self.stores.graph_nodes.list(workflow.id):
                self._apply_graph_node(graph_node)
        self._loaded = True
        self.post_message(self.Loaded())
        self.run_worker(self._follow(position), group="workflow-tree-watch", exit_on_error=False)

    async def _follow(self, position: int) -> None:
        async for change in watcher_for(self.db).watch_many(("workflow", "task", "graph_node"), since=position):
            self.receive(change)

    @work(group="workflow-tree-backfill", exit_on_error=False, description="Listing a revived workflow's tasks.")
    async def _backfill(self, workflow: str) -> None:
        """A workflow that was not listed and came back to life: its tasks and graph nodes from the database
        (those the feed has not brought already, which are as new or newer)."""
        for task in await self.stores.tasks.list(workflow):
            if task.key not in self.tasks.get(workflow, {}):
                self._apply_task(task)
        for graph_node in await self.stores.graph_nodes.list(workflow):
            if graph_node.id not in self.graph_nodes:
                self._apply_graph_node(graph_node)

    def receive(self, change: Change) -> None:
        """Take a committed change, to be applied next frame. A record keeps its place of first arrival (with
        its latest state), so tasks are listed in the order they were created even when one has already run by
        the time the frame is drawn."""
        self._arrived[(change.table, change.id)] = change

    def _apply_arrived(self) -> None:
        """Apply what arrived since the last frame, each record once."""
        if self._arrived:
            arrived, self._arrived = self._arrived, {}
            for change in arrived.values():
                self.apply(change)
            self.version += 1
            if self.on_change is not None:
                self.on_change()

    def apply(self, change: Change) -> None:
        """Show one committed change."""
        if change.record is None:
            return
        if isinstance(change.record, Workflow):
            self._apply_workflow(change.record)
        elif isinstance(change.record, Task):
            self._apply_task(change.record)
        elif isinstance(change.record, GraphNode):
            self._apply_graph_node(change.record)

    def _apply_workflow(self, workflow: Workflow) -> None:
        self.workflows[workflow.id] = workflow
        self.tasks.setdefault(workflow.id, {})
        node = self._node_index.get((workflow.id, None))
        if node is None:
            node = self.root.add(self._workflow_label(workflow), data=NodeRef(workflow.id), expand=True, before=0)
            self._node_index[(workflow.id, None)] = node
            if self._loaded:
                self._backfill(workflow.id)
            if self._to_select == workflow.id:  # a new row has its line after a refresh
                self.call_after_refresh(self._select_pending, workflow.id)
        else:
            node.set_label(self._workflow_label(workflow))

    def _apply_task(self, task: Task) -> None:
        if task.workflow not in self.workflows:  # a workflow older than the listed ones: shown if it changes
            return
        before = self.tasks[task.workflow].get(task.key)
        self.tasks[task.workflow][task.key] = task
        node = self._node_index.get((task.workflow, task.key))
        if node is None:
            parent = self._node_index[(task.workflow, None)]
            node = parent.add_leaf(self._task_label(task), data=NodeRef(task.workflow, task.key))
            self._node_index[(task.workflow, task.key)] = node
        else:
            node.set_label(self._task_label(task))
            if before is None or before.thread != task.thread:  # only a retry changes it: not on every update
                self._drop_other_threads(task)
        # The workflow's done/total and failed counts follow a new task or a new state. A new task counts too: its
        # workflow's row may have been drawn first in the same frame (or listed first on load), and a task can
        # arrive already finished.
        if before is None or before.status != task.status:
            self._node_index[(task.workflow, None)].set_label(self._workflow_label(self.workflows[task.workflow]))

    def _thread_of(self, workflow: str, key: str) -> str | None:
        task = self.tasks.get(workflow, {}).get(key)
        return None if task is None else (task.thread or default_thread(workflow, key))

    def _drop_other_threads(self, task: Task) -> None:
        """A retried or rolled-back graph task runs on another thread: the nodes of its earlier run leave the tree
        (the new thread's nodes come after this change, in commit order)."""
        current = task.thread or default_thread(task.workflow, task.key)
        stale = [
            n.id for n in self.graph_nodes.values()
            if n.workflow == task.workflow and n.task == task.key and n.thread != current
        ]  # fmt: skip
        for node_id in stale:
            del self.graph_nodes[node_id]
            leaf = self._graph_leaves.pop(node_id, None)
            if leaf is not None:
                leaf.remove()

    def _apply_graph_node(self, graph_node: GraphNode) -> None:
        parent = self._node_index.get((graph_node.workflow, graph_node.task))
        if parent is None or graph_node.thread != self._thread_of(graph_node.workflow, graph_node.task):
            return  # a task not listed, or an earlier run of a retried task
        self.graph_nodes[graph_node.id] = graph_node
        node = self._graph_leaves.get(graph_node.id)
        if node is None:
            if not parent.allow_expand:  # the task's first node: the leaf becomes a branch, open
                parent.allow_expand = True
                parent.expand()
            ref = NodeRef(graph_node.workflow, graph_node.task, graph_node.id)
            self._graph_leaves[graph_node.id] = parent.add_leaf(self._graph_node_label(graph_node), data=ref)
        else:
            node.set_label(self._graph_node_label(graph_node))

    def _workflow_label(self, workflow: Workflow) -> Text:
        tasks = self.tasks.get(workflow.id, {})
        done = sum(1 for t in tasks.values() if t.status.value == "completed")
        failed = sum(1 for t in tasks.values() if t.status.value == "failed")
        # A stopped workflow's clock stops with it (its row was last written then), not ticking until resumed.
        end = workflow.updated_at if workflow.status is WorkflowStatus.STOPPED else workflow.finished_at
        took = elapsed(workflow.started_at, end)
        label = f"{icon(workflow.status.value)} [b]{workflow.name}[/] [dim]{workflow.id}[/]"
        label += f"  {done}/{len(tasks)}" if tasks else ""
        label += f" [bold red]✘{failed}[/]" if failed else ""
        label += f" [dim]{took}[/]" if took else ""
        return Text.from_markup(label)

    def _task_label(self, task: Task) -> Text:
        status = task.status.value
        took = elapsed(task.started_at, task.finished_at) if status not in ("pending", "queued") else ""
        return task_row(status, task.key, task.agent, task.attempts, took, task.error)

    def _graph_node_label(self, graph_node: GraphNode) -> Text:
        took = elapsed(graph_node.started_at, graph_node.finished_at)
        label = Text.from_markup(status_icon(graph_node.status) + " ")
        label.append(graph_node.node)  # node names are the graph author's: not markup
        label.append(f" · step {graph_node.step}" + (f" {took}" if took else ""), style="dim")
        return label

    def _tick(self) -> None:
        """Refresh elapsed times of what is running."""
        for workflow in self.workflows.values():
            if workflow.status.value in ("running", "paused"):
                self._node_index[(workflow.id, None)].set_label(self._workflow_label(workflow))
                for task in self.tasks[workflow.id].values():
                    if task.status.value in ("running", "paused", "retrying", "waiting"):
                        self._node_index[(workflow.id, task.key)].set_label(self._task_label(task))
        for graph_node in self.graph_nodes.values():
            if graph_node.status == "running":
                self._graph_leaves[graph_node.id].set_label(self._graph_node_label(graph_node))

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None:
            self.post_message(self.Selected(ref.workflow, ref.task))

    def select_workflow(self, workflow: str) -> None:
        """Put the cursor on a workflow's row; one not shown yet (its change is still on the way from the
        database) gets the cursor when its row arrives."""
        node = self._node_index.get((workflow, None))
        if node is None:
            self._to_select = workflow
            return
        self._to_select = None
        self._move_to(node)

    def _select_pending(self, workflow: str) -> None:
        """The workflow asked for before its row came, unless something else was selected meanwhile (a task of
        it, put under the cursor in the frame its row came in, stays under the cursor)."""
        if self._to_select == workflow:
            self.select_workflow(workflow)

    def select_task(self, workflow: str, task: str) -> None:
        """Put the cursor on a task's row; while the task is not shown (its workflow is older than the tree
        lists, or its row is on the way), on its workflow's row."""
        node = self._node_index.get((workflow, task))
        if node is None:
            self.select_workflow(workflow)
            return
        self._to_select = None
        self._move_to(node)

    def _move_to(self, node: TreeNode[NodeRef]) -> None:
        """The cursor on ``node`` now. Reading ``_tree_lines`` first lays the lines out if rows came or went since
        the last layout: a node added since has no line yet (``move_cursor`` would put the cursor nowhere), and one
        below a row that just opened has a stale one (the cursor would land on the row now there, and laying out
        inside the move put the line back on the old node: the row looked selected but Enter acted on another)."""
        _ = self._tree_lines
        self.move_cursor(node)
