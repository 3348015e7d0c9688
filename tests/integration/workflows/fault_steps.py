"""Steps for the fault suite's in-process tests (tests/integration/test_fault_*.py): small tasks that count every
call in ``CALLS`` (how often each task's step was called, per workflow), and a step held until the test opens its
gate. (Runs killed in another process use ``bench._recovery_steps``.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from engine.errors import TaskFailed

#: (workflow, task) -> how often the task's step was called in this process.
CALLS: Counter[tuple[str, str]] = Counter()
#: Gates ``held`` steps wait on, by the name in their input; a test opens one with ``gate(name).set()``.
GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


def _count(ctx: Any) -> None:
    CALLS[(ctx.workflow, ctx.task.id)] += 1


async def quick(ctx: Any) -> dict[str, Any]:
    """An async step of ``input.delay`` seconds (default 0) with a step boundary, optionally printing a line."""
    _count(ctx)
    delay = float(ctx.input.get("delay", 0))
    if delay:
        await asyncio.sleep(delay)
    await ctx.step()
    if ctx.input.get("say"):
        ctx.log(f"{ctx.task.id} says {ctx.input['say']}")
    return {"task": ctx.task.id}


async def held(ctx: Any) -> dict[str, Any]:
    """Waits until the test opens the gate named ``input.gate``, then returns. It has no step boundary, as many
    agents have none: a pause does not hold it, so it completes while its workflow is paused."""
    _count(ctx)
    await gate(ctx.input["gate"]).wait()
    return {"task": ctx.task.id}


def quick_sync(ctx: Any) -> dict[str, Any]:
    """The same as ``quick`` in a worker thread (``step_sync`` is where pause holds it and cancel stops it)."""
    _count(ctx)
    time.sleep(float(ctx.input.get("delay", 0)))
    ctx.step_sync()
    return {"task": ctx.task.id}


async def flaky(ctx: Any) -> dict[str, Any]:
    """Fails its first ``input.fail`` attempts (default 1), then succeeds after ``input.delay`` seconds."""
    _count(ctx)
    if ctx.attempt <= int(ctx.input.get("fail", 1)):
        raise TaskFailed(f"attempt {ctx.attempt} fails on purpose")
    await asyncio.sleep(float(ctx.input.get("delay", 0)))
    await ctx.step()
    return {"task": ctx.task.id, "attempt": ctx.attempt}
