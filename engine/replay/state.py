"""What a replay knows at one moment of a recording, and the one way it changes: ``ReplayState.apply(event)``.

The state is derived from events only, the way the live engine changes its rows (``engine.run``,
``engine.run_controls``, ``engine.run_state``): ``task.started`` sets a task running with its attempt,
``task.completed`` completes it, a ``workflow.resumed`` that starts a run again (after a stop, crash or failure)
sends unfinished tasks back to pending as ``Engine._adopt`` does, ``workflow.rolled_back`` sends its ``rerun``
tasks back to pending, a retry's ``task.queued`` resets the task and what it blocked. What changes no row needs no
event, so at the last event the derived tasks equal the recording's final task rows (``Replay.final_mismatches``).

Task and node views are frozen: a snapshot is a shallow copy of two dicts (``ReplayState.copy``), whatever their
size, and applying an event replaces the one view it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from db.models import Event, EventType, Task, TaskStatus, WorkflowStatus

_WORKFLOW_STATUS = {
    EventType.WORKFLOW_STARTED: WorkflowStatus.RUNNING,
    EventType.WORKFLOW_RESUMED: WorkflowStatus.RUNNING,
    EventType.WORKFLOW_PAUSED: WorkflowStatus.PAUSED,
    EventType.WORKFLOW_COMPLETED: WorkflowStatus.COMPLETED,
    EventType.WORKFLOW_FAILED: WorkflowStatus.FAILED,
    EventType.WORKFLOW_CANCELLED: WorkflowStatus.CANCELLED,
    EventType.WORKFLOW_STOPPED: WorkflowStatus.STOPPED,
}
_NODE_STATUS = {
    EventType.NODE_STARTED: "running",
    EventType.NODE_COMPLETED: "completed",
    EventType.NODE_FAILED: "failed",
    EventType.NODE_INTERRUPTED: "interrupted",
    EventType.NODE_CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class TaskView:
    """One task as the replay shows it at a moment (the fields of ``db.models.Task`` that events change)."""

    key: str
    agent: str
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    max_attempts: int = 1
    progress: float | None = None
    error: str | None = None
    thread: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class NodeView:
    """One execution of one node of a graph task (``node.*`` events)."""

    task: str
    thread: str
    node: str
    step: int
    status: str = "running"
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.task}/{self.thread}/{self.node}/{self.step}"


@dataclass
class ReplayState:
    """The workflow at one position of a recording: after its first ``position`` events."""

    workflow_status: WorkflowStatus
    tasks: dict[str, TaskView]
    nodes: dict[str, NodeView] = field(default_factory=dict)
    position: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: A ``graph.forked`` with ``downstream`` is followed by its retry: the retry resets completed tasks after it too.
    fork_downstream: bool = False

    @classmethod
    def initial(cls, tasks: list[Task]) -> ReplayState:
        """Before the first event: every task pending, in the recording's order."""
        views = {t.key: TaskView(key=t.key, agent=t.agent, max_attempts=t.max_attempts) for t in tasks}
        return cls(workflow_status=WorkflowStatus.PENDING, tasks=views)

    def copy(self) -> ReplayState:
        return replace(self, tasks=dict(self.tasks), nodes=dict(self.nodes))

    def _set(self, key: str | None, **changes: Any) -> None:
        if key is None or key not in self.tasks:
            return  # an event of a task the recording does not list (a custom agent event): nothing to show
        self.tasks[key] = replace(self.tasks[key], **changes)

    def _reset(self, key: str) -> None:
        self._set(key, status=TaskStatus.PENDING, error=None, progress=None, finished_at=None)

    def apply(self, event: Event, downstream: dict[str, list[str]]) -> None:
        """Apply one event (the next one). ``downstream``: each task's transitive dependents (for retries)."""
        self.position += 1
        kind = event.type
        key = event.task
        if kind in _WORKFLOW_STATUS:
            self._apply_workflow(event)
        elif kind == EventType.WORKFLOW_CREATED:
            for carried, attempts in dict(event.data.get("carried", {})).items():  # a diverged workflow's done ones
                self._set(carried, status=TaskStatus.COMPLETED, progress=1.0, attempts=int(attempts))
        elif kind == EventType.TASK_QUEUED:
            if event.data.get("retry"):
                self._retry(key, downstream)
            self._set(key, status=TaskStatus.QUEUED)
        elif kind == EventType.TASK_STARTED:
            self._set(key, status=TaskStatus.RUNNING, attempts=event.attempt, started_at=event.ts, error=None)
        elif kind == EventType.TASK_PROGRESS:
            self._set(key, progress=event.progress)
        elif kind == EventType.TASK_PAUSED:
            self._set(key, status=TaskStatus.PAUSED)
        elif kind == EventType.TASK_RESUMED:
            self._set(key, status=TaskStatus.RUNNING)
        elif kind == EventType.TASK_WAITING:
            self._set(key, status=TaskStatus.WAITING)
        elif kind == EventType.TASK_RETRYING:
            if event.data.get("redelivered"):  # a worker took the command over: running again at once
                self._set(key, error=None)
            else:
                self._set(key, status=TaskStatus.RETRYING, error=event.error)
        elif kind == EventType.TASK_COMPLETED:
            attempts = int(event.data.get("attempts", self.tasks[key].attempts if key in self.tasks else 0))
            self._set(key, status=TaskStatus.COMPLETED, finished_at=event.ts, progress=1.0, attempts=attempts)
        elif kind == EventType.TASK_FAILED:
            self._set(key, status=TaskStatus.FAILED, error=event.error, finished_at=event.ts)
        elif kind == EventType.TASK_CANCELLED:
            self._set(key, status=TaskStatus.CANCELLED, finished_at=event.ts)
        elif kind == EventType.TASK_SKIPPED:
            self._set(key, status=TaskStatus.SKIPPED, error=event.data.get("reason"), finished_at=event.ts)
        elif kind == EventType.WORKFLOW_ROLLED_BACK:
            # Every task comes back as it was at the checkpoint: ``rerun`` ones pending, the others completed.
            rerun = set(event.data.get("rerun", []))
            for name in self.tasks:
                if name in rerun:
                    self._set(name, started_at=None)
                    self._reset(name)
                else:
                    self._set(name, status=TaskStatus.COMPLETED, error=None)
        elif kind == EventType.GRAPH_FORKED:
            self.fork_downstream = bool(event.data.get("downstream"))
        elif kind in _NODE_STATUS:
            self._apply_node(event)

    def _apply_workflow(self, event: Event) -> None:
        status = _WORKFLOW_STATUS[EventType(event.type)]
        if event.type == EventType.WORKFLOW_RESUMED and "tasks" in event.data:
            # A run starting again on a stored workflow (Engine._adopt): what had not completed starts over.
            for key, task in self.tasks.items():
                if task.status is not TaskStatus.COMPLETED:
                    self._set(key, status=TaskStatus.PENDING, error=None, progress=None)
            self.finished_at = None
        if event.type == EventType.WORKFLOW_STARTED and self.started_at is None:
            self.started_at = event.ts
        if status.finished:
            self.finished_at = event.ts
        self.workflow_status = status

    def _retry(self, key: str | None, downstream: dict[str, list[str]]) -> None:
        """A retry (``engine.run_controls.retry``): the task and what it blocked go back to pending; after a fork
        with ``downstream``, the completed tasks after it too."""
        if key is None:
            return
        every = self.fork_downstream
        self.fork_downstream = False
        self._reset(key)
        for after in downstream.get(key, []):
            view = self.tasks.get(after)
            if view is not None and (every or view.status is not TaskStatus.COMPLETED):
                self._reset(after)

    def _apply_node(self, event: Event) -> None:
        if event.task is None:
            return
        node = NodeView(
            task=event.task,
            thread=str(event.data.get("thread", "")),
            node=str(event.data.get("node", "")),
            step=int(event.data.get("step", 0)),
        )
        before = self.nodes.get(node.key)
        status = _NODE_STATUS[EventType(event.type)]
        if before is None:
            self.nodes[node.key] = replace(node, status=status, started_at=event.ts)
        else:
            self.nodes[node.key] = replace(before, status=status, error=event.error, finished_at=event.ts)
        self._set(event.task, thread=node.thread)
