"""Replay seeking: jumps to random positions of a synthetic 100k-event recording (``engine.replay.Replay.seek``),
p50/p95/max against a target of 200 ms per seek (issue 15: the scrub bar must keep up). Also how long building
the replay (one pass over the events, snapshots every ``SNAPSHOT_EVERY``) takes, which the dashboard pays once
when it opens a file.

``synthetic_recording`` is also what the replay model's unit tests check seeking against.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._stats import percentile
from db.models import Event, EventType, Task, TaskStatus, Workflow, WorkflowStatus
from engine.recorder.model import Recording
from engine.replay import Replay

TARGET_MS = 200.0


def synthetic_recording(events: int = 100_000, tasks: int = 400, seed: int = 7, concurrency: int = 8) -> Recording:
    """A recording of a made-up run of about ``events`` events: ``tasks`` tasks in a chain of waves, up to
    ``concurrency`` at once, each printing output and reporting progress; some fail once and are retried, some
    fail for good (their dependents are skipped). The final task rows are the simulation's own, so a replay that
    derives them differently is caught."""
    rng = random.Random(seed)
    workflow = Workflow(name="synthetic", status=WorkflowStatus.RUNNING)
    wf = workflow.id
    keys = [f"t{i:04d}" for i in range(tasks)]
    rows = {
        key: Task(workflow=wf, key=key, agent=f"a{i % 5}", max_attempts=2,
                  depends_on=[keys[i - concurrency]] if i >= concurrency else [])
        for i, key in enumerate(keys)
    }  # fmt: skip
    out: list[Event] = []
    clock = datetime(2026, 11, 1, tzinfo=UTC)

    def emit(type: str, task: str | None = None, **data: Any) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=rng.choice((1, 2, 5, 20)) if rng.random() > 0.001 else 30_000)
        out.append(Event(seq=len(out) + 1, ts=clock, type=type, workflow=wf, task=task, data=data))

    per_task = max(4, events // tasks - 6)
    emit(EventType.WORKFLOW_CREATED, name="synthetic", tasks=keys)
    emit(EventType.WORKFLOW_STARTED, tasks=tasks)
    budget = {key: per_task for key in keys}
    plan = {key: rng.random() for key in keys}  # < .1 fails once then succeeds; < .13 fails for good
    active: list[str] = []
    waiting = list(keys)
    while waiting or active:
        while len(active) < concurrency:
            ready = [k for k in waiting[: concurrency * 2] if all(rows[u].status.finished for u in rows[k].depends_on)]
            if not ready:
                break
            key = ready[0]
            waiting.remove(key)
            task = rows[key]
            if any(rows[up].status is not TaskStatus.COMPLETED for up in task.depends_on):
                task.status, task.error = TaskStatus.SKIPPED, "upstream failed"
                emit(EventType.TASK_SKIPPED, key, reason="upstream failed")
                continue
            emit(EventType.TASK_QUEUED, key)
            task.status, task.attempts = TaskStatus.RUNNING, 1
            emit(EventType.TASK_STARTED, key, attempt=1)
            active.append(key)
        key = rng.choice(active)
        task = rows[key]
        budget[key] -= 1
        if budget[key] > 0:
            if rng.random() < 0.8:
                emit(EventType.TASK_OUTPUT, key, stream="stdout", lines=[f"{key} line {budget[key]}"])
            else:
                emit(EventType.TASK_PROGRESS, key, progress=round(1 - budget[key] / per_task, 3))
            if budget[key] == per_task // 2 and plan[key] < 0.13 and task.attempts == 1:
                task.status, task.error = TaskStatus.RETRYING, "exit code 1"
                emit(EventType.TASK_RETRYING, key, attempt=1, error="exit code 1", delay_s=0.0)
                task.status, task.attempts, task.error = TaskStatus.RUNNING, 2, None
                emit(EventType.TASK_STARTED, key, attempt=2)
            continue
        active.remove(key)
        if plan[key] < 0.03 and keys.index(key) >= tasks - tasks // 10:  # late, so most of the run goes on
            task.status, task.error = TaskStatus.FAILED, "exit code 2"
            emit(EventType.TASK_FAILED, key, error="exit code 2", attempts=task.attempts)
        else:
            task.status = TaskStatus.COMPLETED
            emit(EventType.TASK_COMPLETED, key, attempts=task.attempts, duration_s=0.1)
    failed = [k for k, t in rows.items() if t.status is TaskStatus.FAILED]
    workflow.status = WorkflowStatus.FAILED if failed else WorkflowStatus.COMPLETED
    emit(EventType.WORKFLOW_FAILED if failed else EventType.WORKFLOW_COMPLETED, failed=failed)
    return Recording(workflow=workflow, tasks=list(rows.values()), events=out)


def measure(events: int, seeks: int, seed: int = 11) -> dict[str, Any]:
    recording = synthetic_recording(events)
    started = time.perf_counter()
    replay = Replay(recording)
    built = time.perf_counter() - started
    rng = random.Random(seed)
    took = []
    for _ in range(seeks):
        target = rng.randrange(len(replay) + 1)
        started = time.perf_counter()
        replay.seek(target)
        took.append(time.perf_counter() - started)
    return {
        "events": len(replay),
        "build_s": round(built, 3),
        "p50_ms": round(percentile(took, 50) * 1000, 3),
        "p95_ms": round(percentile(took, 95) * 1000, 3),
        "max_ms": round(max(took) * 1000, 3),
    }


async def measure_screen(events: int, seeks: int, seed: int = 13) -> dict[str, Any]:
    """The same jumps on the replay dashboard (160x48, headless). ``handled``: the jump itself (the state, the tree's
    changed rows, the agent panes of that moment built anew with their output, metrics and event log);
    ``settled``: from the jump until Textual is idle again (``pilot.pause``: layout and painting done), which is
    what a person scrubbing waits for; it includes Textual's idle detection, measured alone as ``idle_ms``."""
    from tui.replay_app import make_replay_app
    from tui.screens.replay import ReplayScreen

    recording = synthetic_recording(events)
    app = make_replay_app(recording, "synthetic.agentdeck", 1.0)
    rng = random.Random(seed)
    handled: list[float] = []
    settled: list[float] = []
    idle: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReplayScreen)
        await pilot.pause()
        for _ in range(seeks):
            started = time.perf_counter()
            await pilot.pause()
            idle.append(time.perf_counter() - started)
            target = rng.randrange(len(recording.events) + 1)
            started = time.perf_counter()
            screen.go(target)
            handled.append(time.perf_counter() - started)
            await pilot.pause()
            settled.append(time.perf_counter() - started)
    return {
        "handled_p50_ms": round(percentile(handled, 50) * 1000, 1),
        "handled_max_ms": round(max(handled) * 1000, 1),
        "settled_p50_ms": round(percentile(settled, 50) * 1000, 1),
        "settled_p95_ms": round(percentile(settled, 95) * 1000, 1),
        "settled_max_ms": round(max(settled) * 1000, 1),
        "idle_p50_ms": round(percentile(idle, 50) * 1000, 1),
    }


async def run(quick: bool) -> dict[str, Any]:
    figures = measure(20_000 if quick else 100_000, 200 if quick else 1_000)
    figures["target_ms"] = TARGET_MS
    figures["met"] = figures["max_ms"] <= TARGET_MS
    screen = await measure_screen(20_000 if quick else 100_000, 20 if quick else 100)
    screen["target_ms"] = TARGET_MS
    screen["met"] = screen["settled_p95_ms"] <= TARGET_MS
    return {"replay seek (random positions)": figures, "replay seek on screen (jump to settled)": screen}
