"""A task that prints faster than the database stores: every line is kept, memory stays bounded (the command is
held on a full pipe), and its siblings finish on time.

Real shell commands in the local sandbox, the real engine on embedded SurrealDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.events import OutputLimits, output_lines
from engine.spec import WorkflowSpec

TASK_HIGH = 64 * 1024


def spec(tasks: list[dict[str, Any]]) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {"name": "flood", "concurrency": 16, "agents": {"sh": {"kind": "shell"}}, "tasks": tasks}
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect(f"surrealkv://{tmp_path / 'state.db'}") as db, Engine(db, workdir_root=tmp_path / "w") as eng:
        eng.recorder.limits = OutputLimits(
            task_high=TASK_HIGH, task_low=16 * 1024, total_high=1 << 22, total_low=1 << 21
        )
        yield eng


async def test_a_flood_is_stored_line_for_line_while_the_backlog_stays_bounded(engine: Engine) -> None:
    lines = 300_000
    peak = 0
    done = asyncio.Event()

    async def watch_backlog() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, engine.recorder.output_backlog_bytes)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch_backlog())
    wf = await engine.submit(spec([{"id": "flood", "agent": "sh", "run": f"seq 1 {lines}"}]))
    assert await asyncio.wait_for(engine.wait(wf), 300) is WorkflowStatus.COMPLETED
    done.set()
    await watcher
    stored = [
        line
        for event in await engine.stores.events.list(wf)
        if event.type == "task.output"
        for line in output_lines(event)
    ]
    assert stored == [str(n) for n in range(1, lines + 1)], "a line was lost, repeated or reordered"
    # Unread output waits in the pipe, not in the engine: the backlog stays near its mark (plus one pipe read).
    assert peak <= TASK_HIGH + 512 * 1024, f"unstored output reached {peak} bytes"


async def test_a_flooding_task_does_not_delay_its_siblings(engine: Engine) -> None:
    flood = {"id": "flood", "agent": "sh", "run": "yes 'a line that repeats, and repeats, and repeats'"}
    sibling = {"id": "sibling", "agent": "sh", "run": "sleep 1; echo result", "timeout": 8}
    wf = await engine.submit(spec([flood, sibling]))

    async def sibling_done() -> None:
        while not engine.runs[wf].tasks["sibling"].status.finished:  # noqa: ASYNC110 - the run's own state
            await asyncio.sleep(0.05)

    await asyncio.wait_for(sibling_done(), 120)
    run = engine.runs[wf]
    assert run.tasks["sibling"].status is TaskStatus.COMPLETED, run.tasks["sibling"].error
    assert run.tasks["sibling"].output == {"exit_code": 0, "tail": ["result"]}
    await engine.cancel(wf)  # the flood never ends by itself
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
