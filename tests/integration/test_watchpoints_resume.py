"""Watchpoints across a resume in another engine: they go on from what the workflow did before, not from zero.

An llm agent driven by a langchain-core fake chat model (the one boundary faked) spends part of a budget, the engine
is closed while the agent's command runs (the workflow is stopped, resumable), and a new engine over the same
SurrealDB file resumes it: the budget counts what was spent before, so the watchpoint triggers exactly at the call
that takes the total past the limit, and one that had already triggered does not trigger again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from db import connect
from db.models import Event, EventType, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.integration.test_watchpoints import fake_model
from tests.support.fake_llm import reply
from tests.support.polling import until

__all__ = ["fake_model"]  # the fixture (langchain-core's fake chat model as MODEL), used by name

MODEL = "openai:gpt-4o-mini"  # $0.15 per million input tokens: 100k input tokens cost $0.015 a call
CALL_USD = 0.015
# The first time: marks its directory and sleeps (the engine is closed meanwhile); run again on resume: quick.
ONCE = "if [ -f .ran ]; then echo second run; else touch .ran; echo first run; sleep 60; fi"


def spending(watch: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate({
        "name": "spender",
        "agents": {"coder": {"kind": "llm", "model": MODEL, "options": {"tools": ["run_command"]}}},
        "tasks": [{"id": "agent", "agent": "coder", "input": {"prompt": "spend"}}],
        "watch": [watch],
    })  # fmt: skip


def calls(*commands: str) -> list[AIMessage]:
    """A model call per command (each a tool call costing ``CALL_USD``), then a last answer."""
    replies = [
        reply(tool=("run_command", {"command": command}), tokens=(100_000, 10), call_id=f"c{i}")
        for i, command in enumerate(commands)
    ]
    return [*replies, reply("done", tokens=(100_000, 10))]


async def stored(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


async def spend_then_stop(url: str, tmp_path: Path, watch: str, *, paused: bool = False) -> str:
    """Start the workflow, wait until its second command runs (two calls spent) or, with ``paused``, until the
    watchpoint paused it there; close the engine meanwhile (the workflow is stopped, resumable)."""
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        wf = await engine.submit(spending(watch))

        async def sleeping() -> bool:
            lines = [line for e in await stored(engine, wf) if e.type == "task.output" for line in e.output_lines]
            return "first run" in lines

        async def stopped_by_watchpoint() -> bool:
            triggered = [e for e in await stored(engine, wf) if e.type == EventType.WATCHPOINT_TRIGGERED]
            return bool(engine.is_paused(wf)) and bool(triggered)

        if paused:
            await until(stopped_by_watchpoint, "paused by the watchpoint at the second call", limit_s=60)
        else:
            await until(sleeping, "the second command running", limit_s=60)
    return wf


def usage_and_triggers(events: list[Event]) -> list[str]:
    return [e.type for e in events if e.type in (EventType.LLM_USAGE, EventType.WATCHPOINT_TRIGGERED)]


async def test_a_budget_counts_what_was_spent_before_a_resume_in_another_engine(
    tmp_path: Path, fake_model: Any
) -> None:
    fake_model(calls("echo one", ONCE, "echo three", "echo four"))
    url = f"surrealkv://{tmp_path / 'state.db'}"
    wf = await spend_then_stop(url, tmp_path, "cost_usd > 0.05")  # $0.03 spent: under the limit
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        await engine.resume_workflow(wf)
        await until(lambda: engine.is_paused(wf), "paused by its budget", limit_s=60)
        events = await stored(engine, wf)
        # $0.045 after the third call, $0.06 after the fourth: it triggers there, not $0.05 after the resume.
        assert usage_and_triggers(events) == ["llm.usage"] * 4 + ["watchpoint.triggered"]
        (event,) = [e for e in events if e.type == EventType.WATCHPOINT_TRIGGERED]
        (held,) = event.data["conditions"]
        assert held["values"]["cost_usd"] == pytest.approx(4 * CALL_USD, abs=1e-3)
        await engine.resume(wf)
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED


async def test_a_budget_crossed_before_a_resume_does_not_trigger_again_after_it(
    tmp_path: Path, fake_model: Any
) -> None:
    fake_model(calls("echo one", "echo two", "echo three", "echo four"))
    url = f"surrealkv://{tmp_path / 'state.db'}"
    wf = await spend_then_stop(
        url, tmp_path, "cost_usd > 0.02", paused=True
    )  # $0.03 spent: it triggered (and paused) there
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        before = usage_and_triggers(await stored(engine, wf))
        assert before == ["llm.usage"] * 2 + ["watchpoint.triggered"]
        await engine.resume_workflow(wf)
        # Still over budget, but that was told: a level does not trigger again (from zero it would at $0.03 more).
        await until(
            lambda: engine.is_paused(wf) or not engine.is_running(wf), "the workflow ended or paused", limit_s=60
        )
        assert engine.is_paused(wf) is None, usage_and_triggers(await stored(engine, wf))
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED
        assert usage_and_triggers(await stored(engine, wf)) == before + ["llm.usage"] * 3
