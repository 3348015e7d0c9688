"""One way for a test to wait for a condition: poll it, and when it never comes, say what was awaited and what was seen.

Tests wait for conditions, never for fixed times. Where there is nothing to await (a database row, a widget's
text, a counter), they poll with :func:`until`. A test running a Textual app passes its ``Pilot``, so each pause
lets the app process its messages (``pilot.pause``) instead of only sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

#: How long a wait lasts before the test fails: generous, so a loaded machine is slow rather than red.
LIMIT_S = 30.0


def describe(predicate: Callable[..., object]) -> str:
    """The predicate's source line (a lambda reads as what it checks), else its name."""
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
    return " ".join(source.split())[:200]


async def until(
    predicate: Callable[[], object],
    what: str | Callable[[], str] | None = None,
    *,
    limit_s: float = LIMIT_S,
    pause_s: float | None = None,
    pilot: Pilot[Any] | None = None,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy, and return that.

    Fails the test after ``limit_s`` with ``what`` (by default the predicate's source; a callable is asked then,
    to describe the state it failed in) and the last value seen.
    With ``pilot``, pauses through ``pilot.pause`` so a Textual app keeps processing between checks (every 50 ms
    by default, else every 20 ms).
    """
    pause = pause_s if pause_s is not None else (0.05 if pilot is not None else 0.02)
    seen: list[object] = []

    async def poll() -> object:
        while True:
            result = predicate()
            value = await result if inspect.isawaitable(result) else result
            seen[:] = [value]
            if value:
                return value
            if pilot is not None:
                await pilot.pause(pause)
            else:
                await asyncio.sleep(pause)

    try:
        async with asyncio.timeout(limit_s):
            return await poll()
    except TimeoutError:
        last = repr(seen[0])[:500] if seen else "nothing (the predicate never returned)"
        said = what() if callable(what) else what  # a callable says what it saw when the wait ran out
        pytest.fail(f"waited {limit_s:g}s for {said or describe(predicate)}; last value seen: {last}")
