"""Diverge carries exactly the tasks the replay shows completed at the moment chosen.

A completion's checkpoint is sealed at the engine's next write, so its ``event_seq`` is past the ``task.completed``
event (the next task's ``task.queued`` comes first). Diverging at the ``task.completed`` event itself — the replay
shows the task completed there — must carry it with its output; one event earlier — shown running — must run it
again. Real parts: embedded SurrealDB, real shell processes, the replay over the workflow's recording.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.replay import Replay
from engine.spec import WorkflowSpec
from tests.support.replay_support import recording_of


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def chain() -> WorkflowSpec:
    return WorkflowSpec.model_validate({
        "name": "chain",
        "agents": {"sh": {"kind": "shell"}},
        "tasks": [
            {"id": "one", "agent": "sh", "run": "echo '::output::{\"n\": 1}'"},
            {"id": "two", "agent": "sh", "run": "echo two", "depends_on": ["one"]},
        ],
    })  # fmt: skip


async def started_in(engine: Engine, workflow: str) -> list[str]:
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    await engine.recorder.flush()
    return [e.task for e in await engine.stores.events.list(workflow) if e.type == "task.started" and e.task]


async def test_diverging_at_a_completion_carries_what_the_replay_shows_done_there(engine: Engine) -> None:
    source = await engine.submit(chain())
    assert await engine.wait(source) is WorkflowStatus.COMPLETED
    replay = Replay(await recording_of(engine, source))
    events = await engine.stores.events.list(source)
    completed = next(e.seq for e in events if e.type == "task.completed" and e.task == "one")
    sealed = next(c for c in await engine.stores.checkpoints.list(source) if c.task == "one")
    assert sealed.event_seq > completed  # the case in question: the checkpoint comes after the event

    assert replay.seek_seq(completed).tasks["one"].status is TaskStatus.COMPLETED
    at_completion = await engine.diverge(source, completed)
    assert await started_in(engine, at_completion) == ["two"]  # carried, as shown: not run again
    one = await engine.stores.tasks.get(at_completion, "one")
    assert one is not None and one.status is TaskStatus.COMPLETED and one.output == {"n": 1} and one.attempts == 1

    assert replay.seek_seq(completed - 1).tasks["one"].status is TaskStatus.RUNNING
    before = await engine.diverge(source, completed - 1)
    assert await started_in(engine, before) == ["one", "two"]  # shown running: it runs again
