"""Watchpoints never get in the way of the engine: a regex that backtracks for ever, an evaluator that fails, a
trigger racing a cancel, a user's pause or the workflow's end. Real parts: embedded SurrealDB, real shell processes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import Event, EventType, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.polling import until

# One line of 20,000 a's and a '!': (a+)+$ backtracks exponentially on it (with re: for longer than the universe).
LONG_LINE = "head -c 20000 /dev/zero | tr '\\0' a; echo '!'"

# Runs ~5 s: still running when a watchpoint pauses it.
TICKING = "for i in $(seq 1 100); do sleep 0.05; done"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def spec(tasks: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {"name": "hardened", "agents": {"sh": {"kind": "shell"}}, "tasks": tasks, **extra}
    )


async def events(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


# ---- a regex that backtracks for ever ----------------------------------------------------------------------------


@pytest.mark.timeout(120)  # before the fix the event loop is blocked: only pytest-timeout's signal ends the test
async def test_a_catastrophic_regex_is_given_up_and_the_workflow_completes(engine: Engine) -> None:
    tasks: list[dict[str, Any]] = [
        {"id": "long", "agent": "sh", "run": f"{LONG_LINE}; echo after"},
        {"id": "next", "agent": "sh", "run": f"echo next ran; {TICKING}", "depends_on": ["long"]},
    ]
    started = time.monotonic()
    wf = await engine.submit(spec(tasks, watch=['output ~ "(a+)+$"', 'output ~ "next ran"']))
    # The engine was not held up: the next task ran, and the other watchpoint still works (it pauses there).
    triggered = await until(lambda: _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED), "the other one triggered")
    assert triggered[0].data["when"] == 'output ~ "next ran"'
    (removed,) = await _of_type(engine, wf, EventType.WATCHPOINT_REMOVED)
    assert removed.data["when"] == 'output ~ "(a+)+$"'
    assert "took longer than 50 ms" in removed.data["reason"] and "disarmed" in removed.data["reason"]
    assert [w.when for w in await engine.watchpoints(wf)] == ['output ~ "next ran"']  # forgotten, the other kept
    await until(lambda: engine.is_paused(wf), "paused by the other watchpoint")
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert time.monotonic() - started < 90
    lines = [line for e in await events(engine, wf) if e.type == "task.output" for line in e.output_lines]
    assert "after" in lines and "next ran" in lines


async def _of_type(engine: Engine, workflow: str, kind: str) -> list[Event]:
    return [e for e in await events(engine, workflow) if e.type == kind]
