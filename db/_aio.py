"""Waiting with a time limit without losing a cancellation.

On Python 3.11 ``asyncio.wait_for(event.wait(), t)`` returns normally when the task is cancelled in the
same loop turn as the event is set: the cancellation is swallowed. A loop that waits like that — a
change watcher, a sandbox's timeout clock — then goes on running after its owner cancelled it, and the
owner's ``await task`` hangs. ``asyncio.timeout`` keeps an outside cancellation apart from its own.

Where the waiting is a library's (the SurrealDB ws SDK waits for each reply with ``wait_for``),
``keep_cancellation`` raises the cancellation the library lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, limit_s: float | None) -> bool:
    """Wait until ``event`` is set or ``limit_s`` seconds pass; say whether it is set.

    A cancellation of the caller always propagates, even when it lands as the event is set.
    """
    try:
        async with asyncio.timeout(limit_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def wait_future(future: asyncio.Future[Any], limit_s: float | None) -> bool:
    """Wait for ``future`` up to ``limit_s`` seconds (shielded: running out of time leaves it pending);
    say whether it is done. A cancellation of the caller always propagates."""
    try:
        async with asyncio.timeout(limit_s):
            await asyncio.shield(future)
    except TimeoutError:
        pass
    return future.done()


async def keep_cancellation(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; if this task was cancelled meanwhile and the awaitable returned anyway (it lost
    the cancellation), raise ``CancelledError`` now instead of going on."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result
