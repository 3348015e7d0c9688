"""Diverge here: a new live workflow started from a moment of another one (a replayed recording, a run's history).

The moment is an event ``seq`` of the source workflow. The new workflow has the same spec and vars; the tasks the
replay shows completed at that event (``engine.replay.state``) start completed with their outputs and attempts
(they never run again), every other task starts pending and runs. Outputs come from the newest checkpoint taken at
or before that event (``Checkpoint.event_seq``), or for a completion whose checkpoint was sealed just after it,
from that one. It
records where it came from in ``Workflow.diverged_from`` (``{workflow, seq, checkpoint}``) and in its
``workflow.created`` event, whose ``carried`` names the tasks it took over completed (with their attempts).

A graph task that goes back to pending continues its graph from where it stood at the moment, not from the
workflow checkpoint (``carry_graphs``): its thread as it was then is copied to the new workflow's own thread
(``engine.graph.diverged``), so the nodes that had finished do not run again and an interrupt that was waiting
asks again; ``values`` edit that copy's state, ``{task: {state key: value}}``, through the state's reducers. A
graph task none of whose nodes had started by then runs from the start. Which source checkpoint each thread came
from is recorded under ``threads`` in ``diverged_from`` and in the ``workflow.created`` event. The source
workflow's threads are only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Checkpoint, Task, TaskStatus, Workflow
from db.stores import Stores
from engine import checkpoints
from engine.errors import ControlError
from engine.graph.diverged import GraphMoment, carry_thread, moment_of
from engine.graph.support import default_thread
from engine.graph.threads import ThreadSource
from engine.replay.model import dependents
from engine.replay.state import ReplayState
from engine.spec import WorkflowSpec

#: Agent kinds that run on a LangGraph thread (as ``engine.graph.threads.thread_for_rerun`` has them).
_GRAPH_KINDS = ("graph", "llm")

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
    threads: dict[str, dict[str, Any]] = field(default_factory=dict)  # graph task → its copied thread

    def created_data(self) -> dict[str, Any]:
        """The data of the new workflow's ``workflow.created`` event."""
        return {
            "name": self.spec.name,
            "tasks": [t.id for t in self.spec.tasks],
            "diverged_from": self.origin,
            "carried": self.carried,
            **({"threads": self.threads} if self.threads else {}),
        }


def checkpoint_at(history: list[Checkpoint], at_seq: int) -> Checkpoint | None:
    """The newest checkpoint taken at or before event ``at_seq`` (None: none was taken by then)."""
    before = [c for c in history if c.event_seq <= at_seq]
    return max(before, key=lambda c: c.number) if before else None


async def plan(stores: Stores, workflow_id: str, at_seq: int, owner: str) -> Divergence:
    """The workflow that diverges from event ``at_seq`` of ``workflow_id`` (see the module's docstring); its graph
    tasks' threads are ``carry_graphs``'s part."""
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
    shown = await _completed_at(stores, workflow_id, at_seq)
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
    for task in spec.task_rows(workflow.id):
        restored = _completion(history, states, checkpoint, task.key) if task.key in shown else None
        if restored is not None:
            task.status = TaskStatus.COMPLETED
            task.output = restored["output"]
            task.attempts = shown[task.key]
            task.progress = 1.0
            carried[task.key] = task.attempts
        tasks.append(task)
    return Divergence(workflow, tasks, spec, origin, carried)


async def _completed_at(stores: Stores, workflow_id: str, at_seq: int) -> dict[str, int]:
    """The tasks the replay shows completed at event ``at_seq`` (``engine.replay.state``), with their attempts: what
    is carried. A completion's checkpoint is sealed at the next write, so its ``event_seq`` is often past the
    ``task.completed`` event: by checkpoints alone a moment between them would run a task shown completed again
    (and a checkpoint's state may still say completed for a task a later retry already restarted)."""
    rows = await stores.tasks.list(workflow_id)
    state = ReplayState.initial(rows)
    downstream = dependents(rows)
    after = 0
    while after < at_seq:
        page = await stores.events.list(workflow_id, after_seq=after, limit=at_seq - after)
        for event in page:
            if event.seq <= at_seq:
                state.apply(event, downstream)
        if not page:
            break
        after = page[-1].seq
    return {key: view.attempts for key, view in state.tasks.items() if view.status is TaskStatus.COMPLETED}


def _completion(
    history: list[Checkpoint], states: dict[str, Any], base: Checkpoint | None, key: str
) -> dict[str, Any] | None:
    """The restored fields of task ``key``, completed: from the state at the moment's checkpoint, or else from the
    first later checkpoint that recorded its completion (the one sealed just after it). None: none did."""
    restored = checkpoints.restored_state(states, key)
    if restored["status"] is TaskStatus.COMPLETED:
        return restored
    for later in sorted(history, key=lambda c: c.number):
        if (base is None or later.number > base.number) and key in later.task_states:
            restored = checkpoints.restored_state(checkpoints.state_at(history, later.number)[0], key)
            return restored if restored["status"] is TaskStatus.COMPLETED else None
    return None


async def carry_graphs(engine: ThreadSource, planned: Divergence, values: dict[str, Any] | None = None) -> None:
    """Give each graph task of ``planned`` that runs again its thread as it stood at the moment (``values``:
    ``{task: {state key: value}}`` applied to it); records them in ``planned.threads`` and ``diverged_from``."""
    source, at_seq = str(planned.origin["workflow"]), int(planned.origin["seq"])
    events = await engine.stores.events.list(source)
    moments: dict[str, GraphMoment] = {}
    for task in planned.tasks:
        if task.status is TaskStatus.COMPLETED or planned.spec.agents[task.agent].kind not in _GRAPH_KINDS:
            continue
        if (moment := moment_of(events, task.key, at_seq)) is not None:
            moments[task.key] = moment
    edits = _checked_values(planned, moments, values or {})
    copied: list[str] = []
    try:
        for task in planned.tasks:
            if task.key not in moments:
                continue
            thread = default_thread(planned.workflow.id, task.key)
            carried = await carry_thread(engine, source, task.key, moments[task.key], thread, edits.get(task.key))
            if carried is None:
                if task.key in edits:
                    raise ControlError(f"task {task.key}: its graph checkpoint of that moment is not stored here")
                continue  # its checkpoints are gone: it runs its graph from the start
            copied.append(thread)
            task.thread = thread
            planned.threads[task.key] = carried.to_json()
    except Exception:
        for thread in copied:
            await engine.saver.adelete_thread(thread)
        raise
    if planned.threads:
        planned.origin["threads"] = planned.threads
        planned.workflow.diverged_from = planned.origin


def _checked_values(
    planned: Divergence, moments: dict[str, GraphMoment], values: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """``values`` when each names a graph task whose state at the moment can be edited, else ControlError."""
    keys = {t.key for t in planned.tasks}
    for key, edit in values.items():
        if key not in keys:
            raise ControlError(f"edited state for task {key!r}: the workflow has no such task")
        if key in planned.carried:
            raise ControlError(f"edited state for task {key!r}: it had completed by then and is carried over as it was")
        if key not in moments:
            raise ControlError(f"edited state for task {key!r}: no graph node of it had run by then")
        if not isinstance(edit, dict) or not edit:
            raise ControlError(f"edited state for task {key!r} must be a mapping of state keys to values")
    return values
