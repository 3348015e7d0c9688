"""A graph stopped after a step's results were stored but before the checkpoint after it was goes on from there.

LangGraph stores a finished node's writes at once and the checkpoint after the step when the step is over. An
engine that stops in between (closed, killed) leaves a thread whose newest checkpoint has every task's writes:
LangGraph's ``next`` is then empty, and the resumed task took the thread for finished: it "completed" at once with
the state of the step before, the rest of the graph never ran (seen as a watchpoint test failing now and then on a
busy machine). Real LangGraph and real SurrealDB (``surrealkv://``); the saver is held at that one checkpoint only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.checkpointer import SurrealSaver
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.events import output_lines
from engine.spec import WorkflowSpec
from tests.integration.workflows import graphs


def spec() -> WorkflowSpec:
    return WorkflowSpec.model_validate({
        "name": "graph",
        "agents": {"g": {"kind": "graph", "graph": "tests.integration.workflows.graphs:linear"}},
        "tasks": [{"id": "build", "agent": "g", "input": {"topic": "parser"}}],
    })  # fmt: skip


async def test_a_graph_stopped_before_its_step_was_checkpointed_runs_on_from_that_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs.reset()
    store = SurrealSaver.aput
    held = asyncio.Event()

    async def aput(self: SurrealSaver, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if metadata.get("source") == "loop" and metadata.get("step") == 2:  # the one after `write` (step 2)
            held.set()
            await asyncio.Event().wait()  # never stored: the engine stops meanwhile
        return await store(self, config, checkpoint, metadata, new_versions)

    url = f"surrealkv://{tmp_path / 'state.db'}"
    monkeypatch.setattr(SurrealSaver, "aput", aput)
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        wf = await engine.submit(spec())
        await asyncio.wait_for(held.wait(), 30)
    monkeypatch.undo()
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1}

    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        await engine.resume_workflow(wf)
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED
        task = await engine.stores.tasks.get(wf, "build")
        assert task is not None and task.output["log"] == ["plan", "write", "check", "report"]
        assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "check": 1, "report": 1}  # write's result was kept
        await engine.recorder.flush()
        events = await engine.stores.events.list(wf)
        lines = [line for e in events if e.type == "task.output" for line in output_lines(e)]
        assert any(line.startswith("↻ continuing thread") and "the step after write" in line for line in lines), lines
