"""A graph task's thread over time: its checkpoint history (time travel), forks, and fresh threads.

- **history**: every LangGraph checkpoint of the task's thread, newest first (step, the nodes that ran and
  that run next, when, a summary of the state).
- **fork** (time travel): ``aupdate_state`` on a past checkpoint, with edited values or none (*replay from
  here*), makes a new head of the thread; re-running the task continues from that head, so only the steps
  after it run again. History is kept: the fork is a branch, nothing is erased.
- **rollback** of the workflow forks each graph task that goes back to pending from its newest checkpoint taken
  before the workflow checkpoint; a task that had not started by then gets a fresh thread.
- **retry** of a finished graph task runs it afresh on a new thread (``wf:task#2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from db.models import Task
from engine.agents import build_agent, import_folder_of
from engine.errors import AgentUnavailable, ControlError
from engine.graph.stream import jsonable, short
from engine.graph.support import default_thread, next_thread, thread_finished
from engine.spec import WorkflowSpec

if TYPE_CHECKING:
    from db.stores import Stores


class LiveRun(Protocol):
    """What is read of a workflow run in this process (``engine.run.WorkflowRun``)."""

    @property
    def id(self) -> str: ...
    @property
    def spec(self) -> WorkflowSpec: ...
    @property
    def tasks(self) -> dict[str, Task]: ...
    @property
    def agents(self) -> Mapping[str, Any]: ...


class ThreadSource(Protocol):
    """What a graph task's thread is found through: the stores, the LangGraph checkpointer and the runs live here
    (``engine.Engine`` is one; this module takes no more of it)."""

    @property
    def stores(self) -> Stores: ...
    @property
    def saver(self) -> Any: ...
    @property
    def runs(self) -> Mapping[str, LiveRun]: ...


@dataclass(frozen=True)
class HistoryEntry:
    checkpoint: str
    step: int
    source: str
    ran: list[str]  # nodes whose writes produced this checkpoint
    next: list[str]
    created_at: str
    summary: str
    values: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "source": self.source,
            "ran": self.ran,
            "next": self.next,
            "created_at": self.created_at,
            "summary": self.summary,
            "values": self.values,
        }


async def _spec_of(engine: ThreadSource, workflow_id: str) -> WorkflowSpec:
    run = engine.runs.get(workflow_id)
    if run is not None:
        return run.spec
    workflow = await engine.stores.workflows.get(workflow_id)
    if workflow is None:
        raise ControlError(f"no workflow {workflow_id!r}")
    return WorkflowSpec.model_validate(workflow.spec)


async def _task(engine: ThreadSource, workflow_id: str, key: str) -> Task:
    run = engine.runs.get(workflow_id)
    if run is not None and key in run.tasks:
        return run.tasks[key]
    task = await engine.stores.tasks.get(workflow_id, key)
    if task is None:
        raise ControlError(f"workflow {workflow_id} has no task {key!r}")
    return task


async def graph_for(engine: ThreadSource, workflow_id: str, key: str) -> tuple[Any, dict[str, Any], Task]:
    """(the task's compiled graph with our checkpointer, the config of its thread, the task)."""
    spec = await _spec_of(engine, workflow_id)
    task = await _task(engine, workflow_id, key)
    run = engine.runs.get(workflow_id)
    agent: Any = run.agents.get(task.agent) if run is not None else None  # a graph agent: it has compiled()
    if agent is None:
        import_folder_of(spec)
        try:
            agent = build_agent(spec.agents[task.agent])
        except AgentUnavailable as exc:
            raise ControlError(f"task {key}: {exc}") from exc
    if not getattr(agent, "uses_graph", False):
        raise ControlError(f"task {key} is not a graph task (agent {task.agent} is kind {agent.kind})")
    graph = await agent.compiled(None, engine.saver)
    thread = task.thread or default_thread(workflow_id, key)
    return graph, {"configurable": {"thread_id": thread}}, task


async def history(engine: ThreadSource, workflow_id: str, key: str) -> list[HistoryEntry]:
    """The task's thread, newest checkpoint first."""
    graph, config, _task_row = await graph_for(engine, workflow_id, key)
    snapshots = [snapshot async for snapshot in graph.aget_state_history(config)]
    next_of = {s.config["configurable"]["checkpoint_id"]: list(s.next) for s in snapshots}
    values_of = {s.config["configurable"]["checkpoint_id"]: s.values for s in snapshots}
    out = []
    for snapshot in snapshots:
        metadata = snapshot.metadata or {}
        parent = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        raw = snapshot.values
        values = jsonable(raw) if isinstance(raw, dict) else {"value": jsonable(raw)}
        source = str(metadata.get("source", ""))
        out.append(
            HistoryEntry(
                checkpoint=snapshot.config["configurable"]["checkpoint_id"],
                step=int(metadata.get("step", -1)),
                source=source,
                # the nodes that ran to make this checkpoint: what its parent had next (an edit ran nothing)
                ran=next_of.get(parent, []) if parent and source == "loop" else [],
                next=list(snapshot.next),
                created_at=str(snapshot.created_at or ""),
                summary=short(_changed(values, values_of.get(parent)), 120),
                values=values,
            )
        )
    return out


async def fork(
    engine: ThreadSource, workflow_id: str, key: str, checkpoint_id: str, values: dict[str, Any] | None
) -> tuple[str, int]:
    """Make ``checkpoint_id`` (with ``values`` applied through the state's reducers) the thread's head; returns the
    new head's id and the graph step forked from."""
    graph, config, _task_row = await graph_for(engine, workflow_id, key)
    config = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint_id}}
    found = await graph.checkpointer.aget_tuple(config)
    if found is None:
        raise ControlError(f"task {key} has no graph checkpoint {checkpoint_id!r}")
    forked = await graph.aupdate_state(config, values)
    return str(forked["configurable"]["checkpoint_id"]), int((found.metadata or {}).get("step", -1))


async def thread_for_rerun(
    engine: ThreadSource, workflow_id: str, task: Task, *, before: datetime | None
) -> str | None:
    """The thread a graph task re-runs on, after a retry (``before`` None) or a rollback to ``before``.

    Returns the new thread to record, or None to keep the current one (it was forked in place).
    """
    spec = await _spec_of(engine, workflow_id)
    if spec.agents[task.agent].kind not in ("graph", "llm"):
        return None
    fresh = next_thread(workflow_id, task.key, task.thread)
    if before is None:
        return fresh
    graph, config, _task_row = await graph_for(engine, workflow_id, task.key)
    async for snapshot in graph.aget_state_history(config):
        created = datetime.fromisoformat(str(snapshot.created_at))
        if created <= before:
            if thread_finished(snapshot):
                return fresh  # it had finished by then: a completed task is restored, not re-run
            await graph.aupdate_state(snapshot.config, None)
            return None
    return fresh


def _changed(values: dict[str, Any], parent: Any) -> dict[str, Any]:
    """What a checkpoint changed against its parent (everything, for the first one): the useful summary."""
    if not isinstance(parent, dict):
        return values
    before = jsonable(parent)
    return {key: value for key, value in values.items() if before.get(key) != value}
