"""Diverge here with a graph task: the new workflow's graph continues from where the source's thread stood at the
moment (a copy of the thread on its own, in our SurrealDB checkpointer), optionally with edited state; the nodes
that had finished by then do not run again and the source's thread is left as it was. Real LangGraph graphs,
node executions counted in ``graphs.RUNS``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import Event, TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.errors import ControlError
from engine.recorder.load import load
from engine.spec import WorkflowSpec
from tests.integration.workflows import graphs
from tests.support.polling import until
from tests.support.replay_support import recording_of

GRAPHS = "tests.integration.workflows.graphs"


def spec(graph: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "graph",
            "agents": {"g": {"kind": "graph", "graph": f"{GRAPHS}:{graph}"}},
            "tasks": [{"id": "build", "agent": "g", "input": {"topic": "parser"}}],
        }
    )


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    graphs.reset()


@pytest.fixture
async def engine(db_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on mem:// and on a temp surrealkv:// store: the copy goes through our SurrealDB checkpointer."""
    async with connect(db_url) as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def events_of(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


def seq_of(events: list[Event], type: str, node: str) -> int:
    return next(e.seq for e in events if e.type == type and e.data.get("node") == node)


def nodes_started(events: list[Event]) -> list[str]:
    return [e.data["node"] for e in events if e.type == "node.started"]


async def thread_of(engine: Engine, workflow: str) -> list[tuple[str, Any]]:
    """The task's thread: (checkpoint, values) newest first."""
    return [(h.checkpoint, h.values) for h in await engine.graph_history(workflow, "build")]


async def finished_source(engine: Engine, graph: str = "linear") -> tuple[str, list[Event]]:
    source = await engine.submit(spec(graph))
    assert await engine.wait(source) is WorkflowStatus.COMPLETED
    return source, await events_of(engine, source)


@pytest.mark.parametrize(
    ("moment", "node"),
    [("node.completed", "write"), ("node.started", "check")],
    ids=["after-write-completed", "while-check-ran"],
)
async def test_the_graph_continues_from_the_step_of_the_moment(engine: Engine, moment: str, node: str) -> None:
    source, events = await finished_source(engine)
    before = await thread_of(engine, source)
    step2 = next(h for h in await engine.graph_history(source, "build") if h.step == 2)
    graphs.RUNS.clear()

    new = await engine.diverge(source, seq_of(events, moment, node))
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"check": 1, "report": 1}, "nodes finished by the moment ran again"
    new_events = await events_of(engine, new)
    assert nodes_started(new_events) == ["check", "report"]
    task = await engine.stores.tasks.get(new, "build")
    assert task is not None and task.status is TaskStatus.COMPLETED
    assert task.output["log"] == ["plan", "write", "check", "report"] and task.output["count"] == 4

    # The new thread starts with the source's step-2 state, and the source's thread is as it was.
    new_history = await engine.graph_history(new, "build")
    copied = next(h for h in new_history if h.checkpoint == step2.checkpoint)
    assert copied.values == step2.values and copied.next == ["check"]
    assert [h.step for h in new_history] == [4, 3, 2, 1, 0, -1]
    assert await thread_of(engine, source) == before
    recorded = {"from_thread": f"{source}:build", "checkpoint": step2.checkpoint, "step": 2}
    assert new_events[0].data["threads"]["build"] == {
        **recorded, "thread": f"{new}:build", "head": step2.checkpoint, "edited": []
    }  # fmt: skip
    workflow = await engine.stores.workflows.get(new)
    assert workflow is not None and workflow.diverged_from is not None
    assert workflow.diverged_from["threads"]["build"]["checkpoint"] == step2.checkpoint


async def test_edited_values_are_applied_to_the_forked_state(engine: Engine) -> None:
    source, events = await finished_source(engine)
    before = await thread_of(engine, source)
    graphs.RUNS.clear()

    new = await engine.diverge(source, seq_of(events, "node.completed", "write"), {"build": {"topic": "lexer"}})
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"check": 1, "report": 1}
    task = await engine.stores.tasks.get(new, "build")
    assert task is not None and task.output["topic"] == "lexer"
    assert task.output["log"] == ["plan", "write", "check", "report"]
    source_task = await engine.stores.tasks.get(source, "build")
    assert source_task is not None and source_task.output["topic"] == "parser"
    assert await thread_of(engine, source) == before
    [created] = [e for e in await events_of(engine, new) if e.type == "workflow.created"]
    assert created.data["threads"]["build"]["edited"] == ["topic"]
    assert created.data["threads"]["build"]["head"] != created.data["threads"]["build"]["checkpoint"]


async def test_a_moment_waiting_for_an_approval_asks_again_in_the_new_workflow(engine: Engine) -> None:
    source = await engine.submit(spec("with_approval"))

    async def waiting() -> bool:
        task = await engine.stores.tasks.get(source, "build")
        return task is not None and task.status is TaskStatus.WAITING

    await until(waiting, "the source to wait for its approval", limit_s=30)
    await engine.approve(source, "build", "first")
    assert await engine.wait(source) is WorkflowStatus.COMPLETED
    events = await events_of(engine, source)
    graphs.RUNS.clear()

    # The source's thread now holds the answer and approve's writes too: the new one must not take them.
    new = await engine.diverge(source, seq_of(events, "node.interrupted", "approve"))

    async def asks() -> bool:
        return any(e.type == "approval.requested" for e in await events_of(engine, new))

    await until(asks, "the diverged workflow to ask for the approval again", limit_s=30)
    await engine.approve(new, "build", "second")
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"approve": 1, "report": 1}
    assert nodes_started(await events_of(engine, new)) == ["approve", "report"]
    task = await engine.stores.tasks.get(new, "build")
    assert task is not None and task.output["answer"] == "second"
    assert task.output["log"] == ["plan", "write", "check", "approve:second", "report"]
    source_task = await engine.stores.tasks.get(source, "build")
    assert source_task is not None and source_task.output["answer"] == "first"


async def test_a_replayed_recording_diverges_with_its_graph_thread(engine: Engine, tmp_path: Path) -> None:
    """The replay's d: the recording is imported into another database, and the new workflow starts there."""
    source, events = await finished_source(engine)
    recording = await recording_of(engine, source)
    graphs.RUNS.clear()
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "elsewhere") as other:
        imported = await load(db, recording)
        new = await other.diverge(imported, seq_of(events, "node.completed", "write"))
        assert await other.wait(new) is WorkflowStatus.COMPLETED
        assert dict(graphs.RUNS) == {"check": 1, "report": 1}
        assert nodes_started(await events_of(other, new)) == ["check", "report"]


async def test_after_the_graph_task_completed_it_is_carried_and_its_graph_does_not_run(engine: Engine) -> None:
    source, _events = await finished_source(engine)
    graphs.RUNS.clear()
    new = await engine.diverge(source, await engine.stores.events.last_seq(source))
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {}
    new_events = await events_of(engine, new)
    assert nodes_started(new_events) == [] and new_events[0].data["carried"] == {"build": 1}
    assert "threads" not in new_events[0].data
    task = await engine.stores.tasks.get(new, "build")
    assert task is not None and task.output["log"] == ["plan", "write", "check", "report"]


async def test_edited_values_for_a_task_without_graph_state_then_are_refused(engine: Engine) -> None:
    source, events = await finished_source(engine)
    last = await engine.stores.events.last_seq(source)
    with pytest.raises(ControlError, match="carried over"):
        await engine.diverge(source, last, {"build": {"topic": "x"}})
    with pytest.raises(ControlError, match="no such task"):
        await engine.diverge(source, last, {"nope": {"topic": "x"}})
    first_node = seq_of(events, "node.started", "plan")
    with pytest.raises(ControlError, match="no graph node of it had run"):
        await engine.diverge(source, first_node - 1, {"build": {"topic": "x"}})
    with pytest.raises(ControlError, match="mapping"):
        await engine.diverge(source, seq_of(events, "node.completed", "write"), {"build": "x"})
    assert [w.id for w in await engine.stores.workflows.list()] == [source], "a refused diverge created a workflow"
