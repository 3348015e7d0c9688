"""Python steps for the watchpoint hardening tests: real code the real engine runs, doing things at moments a test
chooses — after the workflow is paused, or while it is being cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from db.models import EventType

#: Gates a test opens (``gate(name).set()``); the engine runs in the test's process and loop.
_GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return _GATES.setdefault(name, asyncio.Event())


async def after_gate(ctx: Any) -> dict[str, Any]:
    """Logs ``ready``, then waits until the test opens the gate named ``gate``, with no step boundary (it goes on
    while the workflow is paused, as a step already under way does), then logs ``line`` and/or reports ``cost_usd``
    spent, and stops at a step boundary (held there while paused); with ``then``, waits for that gate after it."""
    ctx.log("ready")
    await gate(ctx.input["gate"]).wait()
    if "line" in ctx.input:
        ctx.log(ctx.input["line"])
    if "cost_usd" in ctx.input:
        ctx.event(EventType.LLM_USAGE, cost_usd=float(ctx.input["cost_usd"]))
    ctx.log("after the gate")
    await ctx.step()
    if "then" in ctx.input:  # more work after the step boundary: until the test opens a second gate
        await gate(ctx.input["then"]).wait()
    return {"done": True}


async def cleans_up_loudly(ctx: Any) -> None:
    """Logs ``ready`` and waits to be cancelled; as it is, logs ``line`` (a cleanup that prints)."""
    ctx.log("ready")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        ctx.log(ctx.input["line"])
        raise
