"""The replay model (``engine.replay``): seeking anywhere gives the state replaying from the start gives, the last
state equals the recorded final rows, stepping and output follow the events, and the playback clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bench.replay_bench import synthetic_recording
from db.models import TaskStatus
from engine.replay import Replay, ReplayClock


def test_seeking_to_random_positions_equals_replaying_from_the_start() -> None:
    recording = synthetic_recording(events=6_000, tasks=60)
    replay = Replay(recording, snapshot_every=97)
    from_scratch = [(state.workflow_status, dict(state.tasks), dict(state.nodes)) for state in replay.iter_states()]
    rng = random.Random(3)
    targets = [rng.randrange(1, len(replay) + 1) for _ in range(150)] + [1, 96, 97, 98, len(replay)]
    for target in targets:  # random order: forwards, backwards, near and far
        state = replay.seek(target)
        assert state.position == target
        assert (state.workflow_status, state.tasks, state.nodes) == from_scratch[target - 1], f"at {target}"
    assert replay.seek(0).tasks == replay.state_at(0).tasks
    assert all(t.status is TaskStatus.PENDING for t in replay.state.tasks.values())


def test_the_last_state_is_the_recorded_final_rows() -> None:
    recording = synthetic_recording(events=5_000, tasks=50)
    replay = Replay(recording)
    assert replay.final_mismatches() == []
    final = replay.seek(len(replay))
    statuses = {t.status for t in final.tasks.values()}
    assert TaskStatus.COMPLETED in statuses and final.workflow_status.finished


def test_a_changed_final_row_is_reported() -> None:
    recording = synthetic_recording(events=2_000, tasks=20)
    recording.tasks[0] = recording.tasks[0].model_copy(update={"status": TaskStatus.FAILED})
    assert Replay(recording).final_mismatches()[0].startswith(f"{recording.tasks[0].key}: replay completed")


def test_step_applies_one_event_and_output_grows_with_position() -> None:
    recording = synthetic_recording(events=2_000, tasks=20)
    replay = Replay(recording)
    first_output = next(i for i, e in enumerate(replay.events) if e.type == "task.output")
    task = replay.events[first_output].task
    assert task is not None
    replay.seek(first_output)
    assert replay.output(task) == []
    event = replay.step()
    assert event is replay.events[first_output] and replay.position == first_output + 1
    assert [line for _, line in replay.output(task)] == replay.events[first_output].output_lines
    assert replay.events_so_far()[-1] is event
    replay.step(-1)
    assert replay.position == first_output and replay.output(task) == []


def test_state_at_leaves_the_current_position_alone() -> None:
    replay = Replay(synthetic_recording(events=2_000, tasks=20))
    replay.seek(500)
    before = dict(replay.state.tasks)
    assert replay.state_at(520).position == 520
    assert replay.position == 500 and replay.state.tasks == before


def test_the_clock_plays_at_its_speed_and_compresses_long_gaps() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start, start + timedelta(seconds=1), start + timedelta(seconds=2), start + timedelta(minutes=10)]
    clock = ReplayClock(times, speed=1, max_gap_s=2.0)
    assert clock.due(100.0) == 0  # paused until played
    clock.play(100.0, 0)
    assert clock.due(100.0) == 1  # the first event is due at once
    assert clock.due(101.0) == 2
    assert clock.due(102.0) == 3
    assert clock.due(103.9) == 3 and clock.due(104.0) == 4  # ten minutes of nothing play as two seconds
    clock.play(200.0, 1)
    clock.set_speed(200.0, 4)
    assert clock.due(200.25) == 2  # one recorded second in a quarter of a second
    assert clock.pause(200.25) == 2 and clock.due(999.0) == 2
    assert clock.set_speed(0.0, 1000) == 100 and clock.slower(0.0) == 64 and clock.faster(0.0) == 100
