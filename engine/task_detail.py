"""Everything about one task, for the dashboard's task detail (Enter on a tree row): its row (input, output, error,
timings), each attempt with the output it printed (from the event table, so also for a task that finished long ago
or ran in another process), and for a graph task its node executions.

``attempts_of`` is the pure part: it cuts a task's events into attempts at each ``task.started`` and says how each
ended (completed, a retry with its error, failed, cancelled, or still running). A task that was rolled back and ran
again starts a new attempt 1: the runs are listed in the order they happened, so nothing printed is hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from db.models import Event, EventType, GraphNode, Task
from db.stores import Stores

#: A task's output kept for the detail at most (the newest lines; the event log and ``workflows show`` have all).
MAX_LINES = 20_000

#: The event that ends an attempt → how it ended.
_ENDINGS: dict[str, str] = {
    EventType.TASK_COMPLETED: "completed",
    EventType.TASK_RETRYING: "failed, retried",
    EventType.TASK_FAILED: "failed",
    EventType.TASK_CANCELLED: "cancelled",
}


@dataclass
class Attempt:
    """One run of a task: from its ``task.started`` to the event that ended it (None while it runs)."""

    number: int  #: the attempt number the engine gave it (1 for the first); 0 for output with no start recorded
    started_at: datetime | None
    ended_at: datetime | None = None
    outcome: str = "running"  #: completed | failed, retried | failed | cancelled | running
    error: str | None = None
    #: (stream, line) in the order printed; stream ``worker`` is not printed output but a note of the worker that
    #: took the attempt's command (``task.assigned``), where it happened
    lines: list[tuple[str, str]] = field(default_factory=list)
    dropped: int = 0  #: older lines left out to stay within ``MAX_LINES`` for the whole task

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass
class TaskDetail:
    task: Task
    agent_kind: str | None
    attempts: Attempts
    nodes: list[GraphNode]


class Attempts:
    """A task's attempts built from its events in seq order: the whole history at once (``add_all``) or one event at
    a time as they arrive (``add``); events of other tasks and events seen before (by seq) are ignored."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.attempts: list[Attempt] = []
        self.seq = 0  #: the newest event seen

    def add(self, event: Event) -> Attempt | None:
        """Take one event; the attempt it started, printed into or ended (None if it was not this task's)."""
        if event.seq <= self.seq or event.task != self.task:
            return None
        self.seq = event.seq
        if event.type == EventType.TASK_STARTED:
            self.attempts.append(Attempt(number=event.attempt, started_at=event.ts))
            return self.attempts[-1]
        if event.type not in (EventType.TASK_OUTPUT, EventType.TASK_ASSIGNED) and event.type not in _ENDINGS:
            return None  # queued, skipped, paused …: nothing of an attempt's own
        if not self.attempts:  # output or an ending with no start stored (a database from before starts were events)
            self.attempts.append(Attempt(number=0, started_at=None))
        current = self.attempts[-1]
        if event.type == EventType.TASK_OUTPUT:
            stream = event.stream
            current.lines.extend((stream, line) for line in event.output_lines)
        elif event.type == EventType.TASK_ASSIGNED:
            current.lines.append(("worker", f"on worker {event.data.get('worker', '?')}"))
        elif event.type == EventType.TASK_RETRYING and event.data.get("redelivered"):
            # A worker died and another runs the command again: the same attempt goes on (no new start).
            current.lines.append(("worker", str(event.error or "taken over by another worker")))
        elif event.type in _ENDINGS and current.outcome == "running":
            current.outcome = _ENDINGS[event.type]
            current.ended_at = event.ts
            current.error = event.error
        else:
            return None
        return current

    def add_all(self, events: Iterable[Event], max_lines: int = MAX_LINES) -> list[Attempt]:
        """Take a history; at most ``max_lines`` lines of output are kept over all attempts, the newest."""
        for event in events:
            self.add(event)
        budget = max_lines
        for attempt in reversed(self.attempts):
            keep = max(0, min(len(attempt.lines), budget))
            attempt.dropped += len(attempt.lines) - keep
            attempt.lines = attempt.lines[len(attempt.lines) - keep :]
            budget -= keep
        return self.attempts


def attempts_of(events: Iterable[Event], task: str, max_lines: int = MAX_LINES) -> list[Attempt]:
    """The attempts of ``task`` in the order they ran, from the workflow's events."""
    return Attempts(task).add_all(events, max_lines)


async def load_task_detail(stores: Stores, workflow: str, key: str) -> TaskDetail | None:
    """The task's detail as stored now, or None if there is no such task."""
    task = await stores.tasks.get(workflow, key)
    if task is None:
        return None
    found = await stores.workflows.get(workflow)
    kind = found.spec.get("agents", {}).get(task.agent, {}).get("kind") if found else None
    events = await stores.events.list(workflow)
    nodes = await stores.graph_nodes.list(workflow, key) if kind == "graph" else []
    attempts = Attempts(key)
    attempts.add_all(events)
    return TaskDetail(
        task=task,
        agent_kind=str(kind) if kind is not None else None,
        attempts=attempts,
        nodes=sorted(nodes, key=lambda n: (n.started_at, n.step)),
    )
