"""The replay's workflow tree: one workflow → its tasks → a graph task's node executions, drawn from a replay's
state at one moment (``engine.replay.ReplayState``), with the live tree's icons, colours and row text
(``tui.widgets.workflow_tree``). Times are measured against the recorded time of the moment shown, not now."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.replay import NodeView, ReplayState
from tui.status import elapsed, icon
from tui.widgets.workflow_tree import status_icon, task_row


class ReplayTree(Tree[str]):
    """A recording's workflow and its tasks at the replay's position."""

    def __init__(self, workflow_id: str, name: str, **kwargs: object) -> None:
        super().__init__("replay", **kwargs)  # type: ignore[arg-type]
        self.workflow_id = workflow_id
        self.workflow_name = name
        self.show_root = False
        self.guide_depth = 2
        self._workflow_node: TreeNode[str] | None = None
        self._task_nodes: dict[str, TreeNode[str]] = {}
        self._node_leaves: dict[str, TreeNode[str]] = {}
        #: What the rows show now: task key → status (what a test compares with the live run).
        self.statuses: dict[str, str] = {}
        #: What each task row was drawn from: a row is drawn again only when it changed (a jump in a recording of
        #: hundreds of tasks changes a few rows; setting every label cost ~35 ms a jump).
        self._drawn: dict[str, tuple[object, ...]] = {}

    def show(self, state: ReplayState, now: datetime | None) -> None:
        """Draw ``state``; ``now`` is the recorded time of the moment shown (running clocks stop there)."""
        if self._workflow_node is None:
            self._workflow_node = self.root.add("", data=self.workflow_id, expand=True)
        self._workflow_node.set_label(self._workflow_label(state, now))
        for key, task in state.tasks.items():
            node = self._task_nodes.get(key)
            if node is None:
                node = self._task_nodes[key] = self._workflow_node.add_leaf("", data=key)
            status = task.status.value
            took = elapsed(task.started_at, task.finished_at or now) if status not in ("pending", "queued") else ""
            row = (status, task.key, task.agent, task.attempts, took, task.error)
            if self._drawn.get(key) != row:
                self._drawn[key] = row
                node.set_label(task_row(*row))
        shown = {n.key for n in state.nodes.values() if n.thread == (state.tasks[n.task].thread or n.thread)}
        for gone in [k for k in self._node_leaves if k not in shown]:
            self._node_leaves.pop(gone).remove()
        for view in state.nodes.values():
            if view.key not in shown or view.task not in self._task_nodes:
                continue
            leaf = self._node_leaves.get(view.key)
            if leaf is None:
                parent = self._task_nodes[view.task]
                parent.allow_expand = True
                parent.expand()
                leaf = self._node_leaves[view.key] = parent.add_leaf("", data=view.task)
            leaf.set_label(self._node_label(view, now))
        self.statuses = {key: task.status.value for key, task in state.tasks.items()}

    def _workflow_label(self, state: ReplayState, now: datetime | None) -> Text:
        done = sum(1 for t in state.tasks.values() if t.status.value == "completed")
        failed = sum(1 for t in state.tasks.values() if t.status.value == "failed")
        took = elapsed(state.started_at, state.finished_at or now) if state.started_at else ""
        label = f"{icon(state.workflow_status.value)} [b]{self.workflow_name}[/] [dim]{self.workflow_id}[/]"
        label += f"  {done}/{len(state.tasks)}"
        label += f" [bold red]✘{failed}[/]" if failed else ""
        label += f" [dim]{took}[/]" if took else ""
        return Text.from_markup(label)

    def _node_label(self, view: NodeView, now: datetime | None) -> Text:
        took = elapsed(view.started_at, view.finished_at or now)
        label = Text.from_markup(status_icon(view.status) + " ")
        label.append(view.node)
        label.append(f" · step {view.step}" + (f" {took}" if took else ""), style="dim")
        return label

    def selected_task(self) -> str | None:
        node = self.cursor_node
        return None if node is None or node is self._workflow_node else node.data
