"""An LLM agent's ``run_command`` asked for while the workflow is paused starts only when it is resumed.

A pause can land after the model asked for a command but before the command starts (the graph stops only at its
next step boundary, and a watchpoint pauses from the event it saw): the command then waited for nothing and ran
unfrozen through the pause. Here a Python step calls the same tool the LLM agent uses, held by the test until the
workflow is paused; everything is real (the engine, the sandbox's subprocess, SurrealDB ``mem://``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.events import output_lines
from engine.spec import WorkflowSpec
from tests.integration.workflows import steps
from tests.support.polling import until


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def test_a_command_asked_for_while_paused_runs_only_after_the_resume(engine: Engine) -> None:
    steps.REACHED["tool"], steps.LET["tool"] = asyncio.Event(), asyncio.Event()
    spec = WorkflowSpec.model_validate({
        "name": "paused-tool",
        "agents": {"step": {"kind": "python", "callable": "tests.integration.workflows.steps:command_when_let"}},
        "tasks": [{"id": "tool", "agent": "step", "input": {"command": "touch ran; echo ran"}}],
    })  # fmt: skip
    wf = await engine.submit(spec)
    await asyncio.wait_for(steps.REACHED["tool"].wait(), 30)
    await engine.pause(wf)
    steps.LET["tool"].set()  # the tool is called now, with the workflow paused

    async def pane() -> list[str]:
        await engine.recorder.flush()
        events = await engine.stores.events.list(wf)
        return [line for e in events if e.type == "task.output" for line in output_lines(e)]

    waiting = "⏸ paused: touch ran; echo ran runs when the workflow is resumed"

    async def told() -> bool:
        return waiting in await pane()

    await until(told, "the tool says it waits for the resume")
    ran = engine.workdir_for(wf, "tool") / "ran"
    assert not ran.exists() and "$ touch ran; echo ran" not in await pane()
    assert (await engine.stores.tasks.get(wf, "tool")).status is TaskStatus.PAUSED  # type: ignore[union-attr]

    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert ran.exists()
    task = await engine.stores.tasks.get(wf, "tool")
    assert task is not None and task.output == {"result": "exit code 0\nran"}
    lines = await pane()
    assert lines.index(waiting) < lines.index("$ touch ran; echo ran") < lines.index("ran")
