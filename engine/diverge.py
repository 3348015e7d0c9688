"""Diverge here: a new live workflow started from a moment of another one (a replayed recording, a run's history).

The moment is an event ``seq`` of the source workflow. The new workflow has the same spec and vars; it starts from
the newest checkpoint taken at or before that event (``Checkpoint.event_seq``): the tasks completed there start
completed with their outputs and attempts (they never run again), every other task starts pending and runs. It
records where it came from in ``Workflow.diverged_from`` (``{workflow, seq, checkpoint}``) and in its
``workflow.created`` event, whose ``carried`` names the tasks it took over completed (with their attempts).

A graph task that goes back to pending runs its graph from the start on the new workflow's own thread: its
LangGraph thread is not forked across workflows yet (``values``, edited graph state, is refused for that reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Checkpoint, Task, TaskStatus, Workflow
from db.stores import Stores
from engine import checkpoints
from engine.errors import ControlError
from engine.spec import WorkflowSpec

#: The new workflow's first lease (the engine's heartbeat renews it while it runs).
FIRST_LEASE = timedelta(seconds=15)


@dataclass
class Divergence:
    """A new workflow ready to be stored and run: its row, its tasks (completed ones carried over) and spec."""

    workflow: Workflow
    tasks: list[Task]
    spec: WorkflowSpec
    origin: dict[str, Any]
    carried: dict[str, int]  # task key → its attempts, for the tasks that start completed

    def created_data(self) -> dict[str, Any]:
        """The data of the new workflow's ``workflow.created`` event."""
        return {
            "name": self.spec.name,
            "tasks": [t.id for t in self.spec.tasks],
            "diverged_from": self.origin,
            "carried": self.carried,
        }


def checkpoint_at(history: list[Checkpoint], at_seq: int) -> Checkpoint | None:
    """The newest checkpoint taken at or before event ``at_seq`` (None: none was taken by then)."""
    before = [c for c in history if c.event_seq <= at_seq]
    return max(before, key=lambda c: c.number) if before else None


async def plan(
    stores: Stores, workflow_id: str, at_seq: int, owner: str, values: dict[str, Any] | None = None
) -> Divergence:
    """The workflow that diverges from event ``at_seq`` of ``workflow_id`` (see the module's docstring)."""
    if values:
        raise ControlError("diverge with edited graph state is not supported yet; fork the graph task instead")
    source = await stores.workflows.get(workflow_id)
    if source is None:
        raise ControlError(f"no workflow {workflow_id!r}")
    last = await stores.events.last_seq(workflow_id)
    if at_seq < 1 or at_seq > last:
        raise ControlError(f"workflow {workflow_id} has events 1 to {last}; there is no event {at_seq}")
    spec = WorkflowSpec.model_validate(source.spec)
    history = await stores.checkpoints.list(workflow_id)
    checkpoint = checkpoint_at(history, at_seq)
    states = checkpoints.state_at(history, checkpoint.number)[0] if checkpoint is not None else {}
    origin = {"workflow": workflow_id, "seq": at_seq, "checkpoint": checkpoint.id if checkpoint else None}
    workflow = Workflow(
        name=source.name,
        description=source.description,
        spec=source.spec,
        source=source.source,
        vars=dict(source.vars),
        owner=owner,
        lease_until=datetime.now(UTC) + FIRST_LEASE,
        diverged_from=origin,
    )
    tasks = []
    carried: dict[str, int] = {}
    for tspec in spec.tasks:
        task = Task(
            workflow=workflow.id,
            key=tspec.id,
            agent=tspec.agent,
            depends_on=list(tspec.depends_on),
            input=dict(tspec.input),
            max_attempts=tspec.max_attempts(spec.defaults),
        )
        restored = checkpoints.restored_state(states, tspec.id)
        if restored["status"] is TaskStatus.COMPLETED:
            task.status = TaskStatus.COMPLETED
            task.output = restored["output"]
            task.attempts = restored["attempts"]
            task.progress = 1.0
            carried[tspec.id] = task.attempts
        tasks.append(task)
    return Divergence(workflow, tasks, spec, origin, carried)
