"""Watchpoints never get in the way of the engine: a regex that backtracks for ever, an evaluator that fails, a
trigger racing a cancel, a user's pause or the workflow's end. Real parts: embedded SurrealDB, real shell processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import Event, EventType, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.integration.workflows import watch_steps
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


# ---- a trigger racing a cancel or a user's pause -----------------------------------------------------------------

STEPS = "tests.integration.workflows.watch_steps"


def python_spec(task: dict[str, Any], watch: str) -> WorkflowSpec:
    agents = {"py": {"kind": "python", "callable": f"{STEPS}:{task.pop('step')}"}}
    return WorkflowSpec.model_validate({"name": "stepped", "agents": agents, "tasks": [task], "watch": [watch]})


async def _said(engine: Engine, workflow: str, line: str) -> bool:
    return any(line in e.output_lines for e in await _of_type(engine, workflow, EventType.TASK_OUTPUT))


async def test_output_matching_while_the_workflow_is_cancelled_does_not_pause_it(engine: Engine) -> None:
    task = {"id": "job", "agent": "py", "step": "cleans_up_loudly", "input": {"line": "ALARM while cleaning up"}}
    wf = await engine.submit(python_spec(task, 'output ~ "ALARM"'))
    await until(lambda: _said(engine, wf, "ready"), "the step waiting")
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    assert await _said(engine, wf, "ALARM while cleaning up")  # the line was stored, as the run was cancelled
    seen = [e.type for e in await events(engine, wf)]
    assert EventType.WATCHPOINT_TRIGGERED not in seen and EventType.WORKFLOW_PAUSED not in seen


async def test_output_stored_between_a_cancel_and_the_run_seeing_it_does_not_pause(engine: Engine) -> None:
    # The window the test above rarely hits (its line is usually stored once the run is ending): cancel has marked
    # the run cancelled, first thing, and a line printed just before is stored now.
    task = {"id": "job", "agent": "py", "step": "cleans_up_loudly", "input": {"line": "bye"}}
    wf = await engine.submit(python_spec(task, 'output ~ "ALARM"'))
    await until(lambda: _said(engine, wf, "ready"), "the step waiting")
    engine.runs[wf].cancelled = True  # what WorkflowRun.cancel does first
    engine.recorder.emit(
        wf, EventType.TASK_OUTPUT, task="job", agent="py", data={"stream": "stdout", "lines": ["ALARM"]}
    )
    await engine.recorder.flush()
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    seen = [e.type for e in await events(engine, wf)]
    assert EventType.WATCHPOINT_TRIGGERED not in seen and EventType.WORKFLOW_PAUSED not in seen


async def test_output_matching_while_the_user_has_it_paused_does_not_trigger(engine: Engine) -> None:
    task = {"id": "job", "agent": "py", "step": "after_gate", "input": {"gate": "paused-output", "line": "ALARM"}}
    wf = await engine.submit(python_spec(task, 'output ~ "ALARM"'))
    await until(lambda: _said(engine, wf, "ready"), "the step waiting")
    await engine.pause(wf)
    watch_steps.gate("paused-output").set()  # the step under way goes on: it prints the matching line now
    await until(lambda: _said(engine, wf, "after the gate"), "the line stored while paused")
    assert await _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED) == []  # no banner over the user's own pause
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert await _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED) == []  # a match holds for its line only


async def test_a_budget_crossed_while_the_user_has_it_paused_triggers_when_resumed(engine: Engine) -> None:
    task = {
        "id": "job",
        "agent": "py",
        "step": "after_gate",
        "input": {"gate": "paused-cost", "cost_usd": 0.75, "then": "cost-end"},
    }
    wf = await engine.submit(python_spec(task, "cost_usd > 0.50"))
    await until(lambda: _said(engine, wf, "ready"), "the step waiting")
    await engine.pause(wf)
    watch_steps.gate("paused-cost").set()  # $0.75 spent by the step under way, while paused
    await until(lambda: _said(engine, wf, "after the gate"), "the spend stored while paused")
    assert await _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED) == []
    await engine.resume(wf)
    # Still over budget once resumed: told now (it would otherwise never be, a level not changing again).
    (event,) = await until(lambda: _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED), "the trigger on resume")
    assert event.data["conditions"][0]["values"]["cost_usd"] == 0.75
    await until(lambda: engine.is_paused(wf), "paused again by the watchpoint")
    watch_steps.gate("cost-end").set()
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED


# ---- a failing evaluator, a pause too late ----------------------------------------------------------------------


async def test_one_failing_watchpoint_neither_stops_the_others_nor_floods_the_log(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    tasks: list[dict[str, Any]] = [{"id": "job", "agent": "sh", "run": f"echo one; echo two; echo ALARM; {TICKING}"}]
    wf = await engine.submit(spec(tasks, watch=['output ~ "one|two"', 'output ~ "ALARM"']))
    broken = next(w for w in engine.watch.armed(wf) if w.when == 'output ~ "one|two"')

    def bug(event: Event) -> None:
        raise KeyError("a bug in this watchpoint's evaluator")

    engine.watch._armed[wf][broken.id].evaluator.observe = bug  # type: ignore[method-assign]
    (event,) = await until(lambda: _of_type(engine, wf, EventType.WATCHPOINT_TRIGGERED), "the other one triggered")
    assert event.data["when"] == 'output ~ "ALARM"'
    await until(lambda: engine.is_paused(wf), "paused by the other watchpoint")
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    failures = [r for r in caplog.records if r.name == "engine.watch.manager" and r.levelno >= logging.ERROR]
    assert len(failures) == 1 and broken.id in failures[0].getMessage()  # once, not per chunk of output


async def test_a_pause_too_late_for_a_finished_workflow_is_logged_plainly(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    wf = await engine.submit(spec([{"id": "job", "agent": "sh", "run": "echo ALARM"}], watch=['output ~ "ALARM"']))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    (watchpoint,) = await engine.watchpoints(wf)
    caplog.set_level(logging.DEBUG, logger="engine.watch.manager")
    # The race a trigger on a workflow's last line can lose: the run ended before the pause got to it.
    await engine.watch._pause_for(watchpoint)
    records = [r for r in caplog.records if r.name == "engine.watch.manager"]
    assert records and all(r.exc_info is None and r.levelno <= logging.INFO for r in records)
    assert "finished" in records[-1].getMessage()
