"""Replay of a real run: after every event, the replay's task states are the states the live engine had then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.replay import Replay
from tests.support.replay_support import recording_of, shell_spec, watch_live_states


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def test_every_event_of_a_live_run_replays_to_the_states_the_engine_had(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = watch_live_states(engine, monkeypatch)
    wf = await engine.submit(shell_spec())
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    replay = Replay(await recording_of(engine, wf))
    assert replay.final_mismatches() == []
    types = {e.type for e in replay.events}
    assert {"task.retrying", "task.failed", "task.skipped", "task.output"} <= types
    compared = 0
    for state in replay.iter_states():
        seq = replay.events[state.position - 1].seq
        if live.get(seq):
            compared += 1
            derived = {key: view.status.value for key, view in state.tasks.items()}
            assert derived == live[seq], f"after seq {seq} ({replay.events[state.position - 1].type})"
    assert compared >= len(replay) - 3  # every event but the workflow's creation and end (no run then)
    replay.seek(len(replay))
    assert [line for _, line in replay.output("fetch")] == ["fetching", "got 3 files"]
