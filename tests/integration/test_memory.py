"""Agent memory through the engine, with the real offline embedder and real subprocesses: tasks remember (shell
``::remember::`` lines, Python ``ctx.remember``), search finds by meaning with provenance, and rollbacks take
memories back and a roll forward brings them again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import Checkpoint, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec

STEPS = "tests.integration.workflows.steps"

FACTS = {
    "a": "The staging database password is rotated every Monday morning.",
    "b": "The release train leaves on Thursdays at noon.",
    "c": "Customers in Norway want their invoices in Norwegian kroner.",
}


def spec(tasks: list[Any]) -> WorkflowSpec:
    agents = {"sh": {"kind": "shell"}, "py": {"kind": "python", "callable": f"{STEPS}:remember_input"}}
    return WorkflowSpec.model_validate({"name": "memory-test", "agents": agents, "tasks": tasks})


@pytest.fixture(params=["mem", "surrealkv"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    url = "mem://" if request.param == "mem" else f"surrealkv://{tmp_path / 'state.db'}"
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def chain() -> WorkflowSpec:
    """a → b → c, each a shell task remembering its fact."""
    keys = list(FACTS)
    return spec(
        [
            {"id": k, "agent": "sh", "run": f"echo '::remember::{FACTS[k]}'", "depends_on": keys[:i][-1:]}
            for i, k in enumerate(keys)
        ]
    )


async def ids_found(engine: Engine, query: str) -> list[str]:
    return [hit.memory.id for hit in await engine.memory.search(query, k=10)]


async def test_a_shell_task_remembers_and_a_paraphrase_finds_it_with_its_provenance(engine: Engine) -> None:
    wf = await engine.submit(chain())
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    hits = await engine.memory.search("When does the release ship?", k=3)

    assert hits[0].memory.content == FACTS["b"]
    top = hits[0].memory
    assert (top.workflow, top.task, top.agent, top.attempt, top.memory_type) == (wf, "b", "sh", 1, "long_term")
    checkpoints = {c.task: c for c in await engine.stores.checkpoints.list(wf)}
    assert top.checkpoint == checkpoints["a"].id  # written after a's checkpoint, before b's own
    await engine.recorder.flush()
    written = [e for e in await engine.stores.events.list(wf) if e.type == "memory.written"]
    assert [(e.task, e.data["content"]) for e in written] == [(k, FACTS[k]) for k in FACTS]
    assert "::remember::" not in "".join(
        str(e.data) for e in await engine.stores.events.list(wf) if e.type == "task.output"
    )


async def test_a_python_task_remembers_from_its_thread_and_finds_its_own_memory(engine: Engine) -> None:
    tasks = [{"id": "note", "agent": "py", "input": {"fact": FACTS["c"], "type": "short_term"}}]
    wf = await engine.submit(spec(tasks))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    output = (await engine.stores.tasks.get(wf, "note")).output  # type: ignore[union-attr]
    assert output["found_self"] is True
    memory = await engine.memory.get(output["memory"])
    assert memory is not None
    assert memory.memory_type == "short_term" and memory.expires_at is not None
    assert memory.metadata == {"source": "test"}
    found = await engine.memory.search("invoice currency for Norwegian clients", k=1, memory_type="short_term")
    assert [h.memory.id for h in found] == [memory.id]
    assert await engine.memory.search("invoice currency for Norwegian clients", k=1, memory_type="long_term") == []


async def test_rollback_hides_later_memories_and_rolling_forward_shows_them_again(engine: Engine) -> None:
    wf = await engine.submit(chain())
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    first = {m.task: m.id for m in await engine.stores.memories.of_workflow(wf)}
    by_task: dict[str | None, Checkpoint] = {c.task: c for c in await engine.stores.checkpoints.list(wf)}

    await engine.rollback(wf, by_task["a"].id)  # b and c are taken back and run again
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    release = await ids_found(engine, "When does the release ship?")
    assert first["b"] not in release and first["c"] not in await ids_found(engine, "invoice currency in Norway")
    assert first["a"] in await ids_found(engine, "staging password rotation")
    rerun = {m.task or "": m for m in await engine.stores.memories.of_workflow(wf) if m.id not in first.values()}
    assert sorted(rerun) == ["b", "c"]  # the re-run remembered again
    assert rerun["b"].id == release[0]
    assert (await engine.memory.get(first["b"])).hidden_by is not None  # type: ignore[union-attr]  # kept

    await engine.rollback(wf, by_task["c"].id)  # forward again, to the first run's end
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    release = await ids_found(engine, "When does the release ship?")
    assert release[0] == first["b"]
    assert rerun["b"].id not in release
    assert first["c"] in await ids_found(engine, "invoice currency in Norway")
    await engine.recorder.flush()
    rolled = [e.data for e in await engine.stores.events.list(wf) if e.type == "workflow.rolled_back"]
    assert [(d["memories_hidden"], d["memories_restored"]) for d in rolled] == [(2, 0), (2, 2)]


async def test_a_forked_graph_task_no_longer_finds_what_its_later_steps_remembered(engine: Engine) -> None:
    agents = {"g": {"kind": "graph", "graph": "tests.integration.workflows.graphs:remembering"}}
    tasks = [{"id": "build", "agent": "g", "input": {"topic": "parser"}}]
    wf = await engine.submit(WorkflowSpec.model_validate({"name": "fork-memory", "agents": agents, "tasks": tasks}))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    first = {m.content.split()[1]: m for m in await engine.stores.memories.of_workflow(wf)}
    assert {name: m.graph_step for name, m in first.items()} == {"plan": 1, "write": 2, "check": 3, "report": 4}

    step2 = next(h for h in await engine.graph_history(wf, "build") if h.step == 2)
    await engine.fork_graph(wf, "build", step2.checkpoint)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    shown = {m.id for m in await engine.stores.memories.of_workflow(wf) if m.hidden_by is None}
    assert first["plan"].id in shown and first["write"].id in shown
    assert first["check"].id not in shown and first["report"].id not in shown  # taken back by the fork
    found = await engine.memory.search("the check step of parser is done", k=10)
    checks = [h.memory for h in found if h.memory.content.startswith("the check step")]
    assert len(checks) == 1 and checks[0].id != first["check"].id  # only the fork's own run of it
