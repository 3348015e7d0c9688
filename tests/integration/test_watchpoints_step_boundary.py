"""A watchpoint stops an LLM agent before the step after the one that met it, however slowly events are stored.

Watchpoints see an event once it is stored. An agent answered at once (here: langchain-core's fake chat model, the
one boundary faked) could outrun that: the third identical tool call's command ran, the model answered, and the task
completed before the watchpoint saw the call, so the workflow "paused" as it ended (a CI failure on a busy machine).
Now a command waits until the watchpoints saw its call. Here the database write holding that call is held until the
agent is either waiting for it (fixed) or has run the command (broken); the engine, sandbox and SurrealDB are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import EventType
from engine.engine import Engine
from engine.events import output_lines
from engine.watch import WatchManager
from engine.writer import StateWriter
from tests.integration.test_watchpoints import fake_model, paused_by_watchpoint, resumes_to_the_end, spec
from tests.support.fake_llm import reply
from tests.support.polling import until

__all__ = ["fake_model"]  # the fixture (langchain-core's fake chat model as MODEL), used by name

COMMAND = "echo call >> calls; echo retrying"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


class SlowStore:
    """Holds the database write of the batch holding the ``nth`` event of ``kind`` until ``release``, and counts who
    waits meanwhile for the watchpoints to see what was emitted (``WatchManager.seen``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kind: str, nth: int) -> None:
        self.held, self.release = asyncio.Event(), asyncio.Event()
        self.waiting = 0
        stored = 0
        apply, seen = StateWriter._apply, WatchManager.seen

        async def slow_apply(writer: StateWriter, batch: Any, prepared: Any = None) -> Any:
            nonlocal stored
            stored += sum(e.type == kind for e in batch.events)
            if stored >= nth and not self.release.is_set():
                self.held.set()
                await self.release.wait()
            return await apply(writer, batch, prepared)

        async def watching(manager: WatchManager, workflow: str) -> None:
            self.waiting += 1
            try:
                await seen(manager, workflow)
            finally:
                self.waiting -= 1

        monkeypatch.setattr(StateWriter, "_apply", slow_apply)
        monkeypatch.setattr(WatchManager, "seen", watching)

    async def agent_held_or_ran_on(self, ran: Callable[[], int], limit: int) -> int:
        """Once the write is held: wait until the agent waits for the watchpoints (fixed) or has run ``limit``
        commands (broken); the commands run by then. Lets the write go in any case."""
        try:
            await asyncio.wait_for(self.held.wait(), 30)
            await until(lambda: self.waiting > 0 or ran() >= limit, "the agent waits for the watchpoints, or runs on")
            return ran()
        finally:
            self.release.set()


def counter(engine: Engine, workflow: str) -> Callable[[], int]:
    calls = engine.workdir_for(workflow, "agent") / "calls"
    return lambda: len(calls.read_text().splitlines()) if calls.exists() else 0


async def pane(engine: Engine, workflow: str) -> list[str]:
    await engine.recorder.flush()
    return [
        line for e in await engine.stores.events.list(workflow) if e.type == "task.output" for line in output_lines(e)
    ]


async def test_the_repeated_call_waits_for_the_watchpoint_and_runs_only_after_the_resume(
    engine: Engine, fake_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    same = ("run_command", {"command": COMMAND})
    fake_model(
        [reply(tool=same, tokens=(100, 5), call_id=f"c{i}") for i in range(3)] + [reply("gave up", tokens=(100, 5))]
    )
    store = SlowStore(monkeypatch, EventType.TOOL_CALLED, 3)
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "loop"},
                                    "watch": ["tool_repeats >= 3"]}]))  # fmt: skip
    ran = counter(engine, wf)
    assert await store.agent_held_or_ran_on(ran, 3) == 2, "the third call ran before the watchpoint saw it"

    event = await paused_by_watchpoint(engine, wf)
    assert event.data["conditions"][0]["values"]["count"] == 3 and ran() == 2
    await resumes_to_the_end(engine, wf)
    assert ran() == 3
    assert f"⏸ paused: {COMMAND} runs when the workflow is resumed" in await pane(engine, wf)


async def test_a_budget_crossed_by_a_model_call_stops_the_graph_before_its_tool_runs(
    engine: Engine, fake_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = ("run_command", {"command": COMMAND})  # $0.015 a call: the second crosses $0.02
    fake_model([reply(tool=step, tokens=(100_000, 10), call_id=f"c{i}") for i in range(3)]
               + [reply("done", tokens=(1_000, 10))])  # fmt: skip
    store = SlowStore(monkeypatch, EventType.LLM_USAGE, 2)
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "spend"}}],
                                  watch=["cost_usd > 0.02"]))  # fmt: skip
    ran = counter(engine, wf)
    assert await store.agent_held_or_ran_on(ran, 2) == 1, "the tool step after the call ran before the watchpoint"

    await paused_by_watchpoint(engine, wf)
    assert ran() == 1
    assert "⏸ paused at a step boundary; resume continues from the checkpoint" in await pane(engine, wf)
    await resumes_to_the_end(engine, wf)
    assert ran() == 3
