"""Diverge here (``Engine.diverge``): a new workflow from a moment of another, its completed tasks carried over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.errors import ControlError
from engine.replay import Replay
from engine.spec import WorkflowSpec
from tests.support.replay_support import recording_of, shell_spec


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def chain() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "chain",
            "agents": {"sh": {"kind": "shell"}},
            "tasks": [
                {"id": "one", "agent": "sh", "run": "echo '::output::{\"n\": 1}'"},
                {"id": "two", "agent": "sh", "run": "echo two", "depends_on": ["one"]},
                {"id": "three", "agent": "sh", "run": "echo three", "depends_on": ["two"]},
            ],
        }
    )


async def test_diverging_after_a_task_completed_skips_it_and_runs_the_rest(engine: Engine) -> None:
    source = await engine.submit(chain())
    assert await engine.wait(source) is WorkflowStatus.COMPLETED
    await engine.recorder.flush()
    events = await engine.stores.events.list(source)
    checkpoint = next(c for c in await engine.stores.checkpoints.list(source) if c.task == "one")
    # The moment the checkpoint of one's completion was announced: one is done, two is not (it may have started).
    moment = next(e.seq for e in events if e.type == "checkpoint.created" and e.data["checkpoint"] == checkpoint.id)

    new = await engine.diverge(source, moment)
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    await engine.recorder.flush()
    workflow = await engine.stores.workflows.get(new)
    assert workflow is not None
    assert workflow.diverged_from == {"workflow": source, "seq": moment, "checkpoint": checkpoint.id}
    new_events = await engine.stores.events.list(new)
    started = [e.task for e in new_events if e.type == "task.started"]
    assert started == ["two", "three"], "a task completed before the moment ran again"
    created = new_events[0]
    assert created.type == "workflow.created" and created.data["carried"] == {"one": 1}
    assert created.data["diverged_from"]["seq"] == moment
    one = await engine.stores.tasks.get(new, "one")
    assert one is not None and one.status is TaskStatus.COMPLETED and one.output == {"n": 1}


async def test_diverging_before_any_checkpoint_runs_everything_and_a_later_moment_keeps_failures_out(
    engine: Engine,
) -> None:
    source = await engine.submit(shell_spec())
    assert await engine.wait(source) is WorkflowStatus.FAILED
    new = await engine.diverge(source, 2)
    assert await engine.wait(new) is WorkflowStatus.FAILED  # the same spec fails the same way
    await engine.recorder.flush()
    workflow = await engine.stores.workflows.get(new)
    assert workflow is not None and workflow.diverged_from is not None
    assert workflow.diverged_from["checkpoint"] is None
    started = {e.task for e in await engine.stores.events.list(new) if e.type == "task.started"}
    assert {"fetch", "flaky", "build", "broken", "report"} <= started


async def test_a_moment_outside_the_history_is_refused(engine: Engine) -> None:
    source = await engine.submit(chain())
    await engine.wait(source)
    with pytest.raises(ControlError, match="there is no event 9999"):
        await engine.diverge(source, 9999)
    with pytest.raises(ControlError, match="no workflow"):
        await engine.diverge("wf-nope", 1)


async def test_a_diverged_workflow_replays_to_its_final_rows(engine: Engine) -> None:
    source = await engine.submit(chain())
    await engine.wait(source)
    await engine.recorder.flush()
    last = await engine.stores.events.last_seq(source)
    new = await engine.diverge(source, last)
    assert await engine.wait(new) is WorkflowStatus.COMPLETED
    replay = Replay(await recording_of(engine, new))
    assert replay.final_mismatches() == []
    replay.seek(1)
    assert all(view.status is TaskStatus.COMPLETED for view in replay.state.tasks.values())
