"""A ``running`` watchpoint after a rollback: the attempt the rollback stopped no longer counts.

A rollback sends a running task back to pending without a task end event; its timer went on and, once past the
limit, paused the workflow for a task that was not running at all. Real parts: embedded SurrealDB, shell processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import Event, TaskStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.polling import until


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def _events(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


async def test_a_task_rolled_back_while_running_does_not_trigger_running_while_pending(engine: Engine) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "rolled",
            "agents": {"sh": {"kind": "shell"}},
            "tasks": [
                {"id": "a", "agent": "sh", "run": "echo a"},
                # Quick the first time; 6 s when run again after the rollback (its workspace kept the file), while
                # `long` waits pending.
                {"id": "first", "agent": "sh", "depends_on": ["a"], "run": "[ -f once ] && sleep 6; touch once"},
                {"id": "long", "agent": "sh", "depends_on": ["first"], "run": "sleep 60", "watch": ["running > 3s"]},
            ],
        }
    )
    wf = await engine.submit(spec)
    task = await until(lambda: engine.stores.tasks.get(wf, "long"), "the long task's row")
    assert task is not None

    async def long_running() -> bool:
        row = await engine.stores.tasks.get(wf, "long")
        return row is not None and row.status is TaskStatus.RUNNING

    await until(long_running, "long running")
    history = await engine.stores.checkpoints.list(wf)
    target = next(c for c in history if c.task == "a")  # taken when `a` completed: `first` and `long` run again
    await engine.rollback(wf, target.id)

    # `first` runs again for 6 s; `long` is pending all that time, then starts and runs past 3 s.
    async def triggered() -> list[Event]:
        return [e for e in await _events(engine, wf) if e.type == "watchpoint.triggered"]

    found = await until(triggered, "the running watchpoint triggered", limit_s=120)
    events = await _events(engine, wf)
    starts = [e.seq for e in events if e.type == "task.started" and e.task == "long"]
    assert len(starts) == 2, "long started again after the rollback before the watchpoint triggered"
    assert found[0].seq > starts[1] and found[0].task == "long"
    await engine.cancel(wf)
