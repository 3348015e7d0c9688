"""Python steps used by the engine tests' workflows (real code run by the real engine)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

# Tasks running right now, per test run (the concurrency tests read the peak).
ACTIVE: dict[str, int] = {}
PEAK: dict[str, int] = {}


async def noop(ctx: Any) -> dict[str, Any]:
    return {"task": ctx.task.id}


async def track_concurrency(ctx: Any) -> None:
    """Counts how many tasks of one agent run at once; holds for a moment so overlaps can happen."""
    agent = ctx.agent.name
    ACTIVE[agent] = ACTIVE.get(agent, 0) + 1
    PEAK[agent] = max(PEAK.get(agent, 0), ACTIVE[agent])
    try:
        await asyncio.sleep(0.05)
    finally:
        ACTIVE[agent] -= 1


def record(ctx: Any) -> dict[str, Any]:
    """A side effect: append this task's id to the log file named in the input (sync: runs in a thread).

    With ``wait_for`` in the input it first waits until that file exists, so a test can hold it at a point."""
    gate = ctx.input.get("wait_for")
    while gate and not Path(gate).exists():
        ctx.step_sync()
        time.sleep(0.01)
    delay = float(ctx.input.get("delay", 0.3))
    time.sleep(delay / 2)
    ctx.step_sync()
    with Path(ctx.input["log"]).open("a") as log:
        log.write(ctx.task.id + "\n")
    time.sleep(delay / 2)
    return {"wrote": ctx.task.id}


def echo_upstream(ctx: Any) -> dict[str, Any]:
    return {"input": ctx.input, "upstream": ctx.upstream}


def dump(ctx: Any) -> str:
    return json.dumps(ctx.upstream, sort_keys=True)


def remember_input(ctx: Any) -> dict[str, Any]:
    """A synchronous agent that remembers ``input.fact`` (from its worker thread) and what it found for it."""
    memory = ctx.remember_sync(ctx.input["fact"], ctx.input.get("type", "long_term"), metadata={"source": "test"})
    hits = ctx.search_memory_sync(ctx.input["fact"], 1)
    return {"memory": memory.id, "found_self": bool(hits) and hits[0].memory.id == memory.id}


#: Set by ``command_when_let``: it got as far as its gate. ``LET`` lets it go on. Made fresh by each test.
REACHED: dict[str, asyncio.Event] = {}
LET: dict[str, asyncio.Event] = {}


async def command_when_let(ctx: Any) -> dict[str, Any]:
    """Runs ``input.command`` with an LLM agent's ``run_command`` tool once the test lets it (``LET[task]``): the
    test can pause the workflow in between, as a pause can land between a model's answer and the tool call."""
    from engine.llm.tools import make_tools

    (run_command,) = make_tools(ctx, ["run_command"])
    REACHED[ctx.task.id].set()
    await LET[ctx.task.id].wait()
    return {"result": await run_command.ainvoke({"command": ctx.input["command"]})}
