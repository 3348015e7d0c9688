"""Controls racing the work they control (issue 9, point 5), through the public ``Engine`` API.

Hundreds of small tasks complete while pause, resume, cancel, retry and rollback land at random moments; then the
checks of ``fault_support.check_consistent`` must hold whatever the interleaving: a task whose ``task.completed``
was published ends completed and is never run again (unless a retry or rollback asked for it); no task completes
twice; the workflow's final status agrees with its tasks; the stored stream is gap-free, equals what was published
live, and each run of the workflow ends with exactly one final event and nothing after it. A resume afterwards
re-runs nothing that completed. The fast versions run by default, the long ones (more tasks, more seeds, storms
for the whole run) with ``-m slow``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from tests.integration.fault_support import (
    Live,
    check_consistent,
    hammer,
    make_spec,
    many_tasks,
    outcome,
    runs_of,
    settled,
    tail,
    when,
)
from tests.integration.workflows.fault_steps import CALLS, gate


@pytest.fixture
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on ``mem://``, or on a temporary ``surrealkv://`` store for tests parametrized with
    ``@pytest.mark.parametrize("engine", ["surrealkv"], indirect=True)`` (slower commits, other interleavings)."""
    kind = getattr(request, "param", "mem")
    url = "mem://" if kind == "mem" else f"surrealkv://{tmp_path / 'state.db'}"
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def errors_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_checks_catch_a_completed_task_that_ends_in_another_state(engine: Engine) -> None:
    """The checks are the tests' eyes: fed a run whose completed task was then overwritten, they fail."""
    live = Live(engine)
    spec = make_spec([{"id": "a", "agent": "quick"}, {"id": "b", "agent": "quick", "depends_on": ["a"]}])
    workflow = await engine.submit(spec)
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)
    engine.writer.task(workflow, "a", {"status": TaskStatus.PAUSED})  # what the issue saw a racing pause do
    with pytest.raises(AssertionError, match="a published completed, ends"):
        await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)


# ---- pause and resume hammered while hundreds of tasks complete ----------------------------------------------------


async def pause_resume_storm(engine: Engine, tmp_path: Path, seed: int, n: int, pauses: int | None) -> None:
    """``pauses`` pause/resume pairs while ``n`` tasks complete (the workflow is held open until they landed), or,
    with None, pairs for as long as the workflow runs."""
    rng = random.Random(seed)
    live = Live(engine)
    tasks = many_tasks(n, rng)
    if pauses is not None:
        tasks.append(tail(str(tmp_path)))
    spec = make_spec(tasks, concurrency=16)
    workflow = await engine.submit(spec)
    landed = await hammer(engine, workflow, rng, limit=pauses)
    gate(str(tmp_path)).set()
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    stored, events = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)
    assert landed == pauses if pauses is not None else landed >= 10, landed
    assert sum(1 for e in events if e.type == "workflow.paused") == landed
    runs = runs_of(engine, workflow, spec)
    assert runs == Counter(dict.fromkeys(stored, 1)), f"ran other than once: {(runs - Counter(stored)).most_common(5)}"


async def test_pause_resume_storm_while_400_tasks_complete(engine: Engine, tmp_path: Path) -> None:
    await pause_resume_storm(engine, tmp_path, seed=9, n=400, pauses=12)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["mem", "surrealkv"], indirect=True)
@pytest.mark.parametrize("seed", range(6))
async def test_pause_resume_storm_while_400_tasks_complete_many_seeds(
    engine: Engine, tmp_path: Path, seed: int
) -> None:
    await pause_resume_storm(engine, tmp_path, seed=seed, n=400, pauses=40)


# ---- pause during a retry's backoff --------------------------------------------------------------------------------


async def test_pause_during_a_retry_backoff_holds_the_retry_until_resumed(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue saw ``RuntimeError: Cannot change state of finished Timeout`` here, and a half-paused run."""
    live = Live(engine)
    task = {"id": "f", "agent": "flaky", "retries": 2, "timeout": 30}
    workflow = await engine.submit(make_spec([task], defaults={"retry_backoff": 0.3}))
    retrying = await live.wait_for(workflow, "task.retrying")
    with caplog.at_level(logging.ERROR):
        await engine.pause(workflow)
        stored = await engine.stores.workflows.get(workflow)
        assert stored is not None and stored.status is WorkflowStatus.PAUSED
        # The one fixed wait: the backoff ends while paused, and the retry must not start before the resume.
        await asyncio.sleep(retrying.data["delay_s"] + 0.3)
        assert CALLS[(workflow, "f")] == 1, "the retry ran while the workflow was paused"
        await engine.resume(workflow)
        assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    assert not errors_in(caplog)
    tasks, events = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)
    assert tasks["f"].attempts == 2 and CALLS[(workflow, "f")] == 2
    order = [e.type for e in events if e.type in ("task.retrying", "workflow.paused", "workflow.resumed")]
    assert order == ["task.retrying", "workflow.paused", "workflow.resumed"]
    assert [e.data.get("attempt") for e in events if e.type == "task.started"] == [1, 2]


async def flaky_storm(engine: Engine, tmp_path: Path, seed: int, n: int, pauses: int) -> None:
    """``n`` tasks that fail their first attempt (with timeouts and short backoffs) while ``pauses`` pause/resume
    pairs land before, during and after attempts and backoffs."""
    rng = random.Random(seed)
    live = Live(engine)
    keys = [f"f{i:03d}" for i in range(n)]
    tasks = [
        {"id": key, "agent": "flaky", "retries": 2, "timeout": 30, "input": {"delay": rng.uniform(0, 0.01)}}
        for key in keys
    ]
    spec = make_spec([*tasks, tail(str(tmp_path))], concurrency=16, defaults={"retry_backoff": 0.01})
    workflow = await engine.submit(spec)
    assert await hammer(engine, workflow, rng, limit=pauses) == pauses
    gate(str(tmp_path)).set()
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    stored, _ = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)
    assert {key: stored[key].attempts for key in keys} == dict.fromkeys(keys, 2)
    assert {key: CALLS[(workflow, key)] for key in keys} == dict.fromkeys(keys, 2)


async def test_pause_resume_storm_over_tasks_in_retry_backoff(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await flaky_storm(engine, tmp_path, seed=5, n=100, pauses=8)
    assert not errors_in(caplog)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
async def test_pause_resume_storm_over_tasks_in_retry_backoff_many_seeds(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    with caplog.at_level(logging.ERROR):
        await flaky_storm(engine, tmp_path, seed=seed, n=300, pauses=30)
    assert not errors_in(caplog)


# ---- cancel racing pauses and completions, then resume -------------------------------------------------------------


async def cancel_then_resume(engine: Engine, tmp_path: Path, seed: int, n: int, pauses: int) -> None:
    """Cancel while tasks complete (after ``pauses`` pause/resume pairs; 0: racing completions alone), then resume
    the cancelled workflow: what completed before the cancel never runs again, the rest completes once."""
    rng = random.Random(seed)
    live = Live(engine)
    spec = make_spec([*many_tasks(n, rng), tail(str(tmp_path))], concurrency=16)
    workflow = await engine.submit(spec)
    if pauses:
        assert await hammer(engine, workflow, rng, limit=pauses, cancel=True) == pauses
    else:
        await live.wait_for(workflow, "task.completed", count=rng.randint(1, n // 2))
        await engine.cancel(workflow)
    assert await engine.wait(workflow) is WorkflowStatus.CANCELLED
    tasks, _ = await check_consistent(engine, workflow, live, WorkflowStatus.CANCELLED)
    done = {k for k, t in tasks.items() if t.status is TaskStatus.COMPLETED}
    runs_before = runs_of(engine, workflow, spec)
    assert all(runs_before[k] == 1 for k in done)

    gate(str(tmp_path)).set()
    await engine.resume(workflow)
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED, events_tell_state=False)
    runs = runs_of(engine, workflow, spec)
    assert {k: runs[k] for k in done} == dict.fromkeys(done, 1), "a task completed before the cancel ran again"
    # A task cancelled mid-run may have done its work before it was stopped; it then ran once more on resume.
    assert all(1 <= runs[k] <= runs_before[k] + 1 for k in tasks), runs
    _, events = await settled(engine, workflow)
    completions = Counter(e.task for e in events if e.type == "task.completed")
    assert completions == Counter(dict.fromkeys(tasks, 1)), "a task completed twice (or never) overall"


async def test_cancel_racing_completions_then_resume(engine: Engine, tmp_path: Path) -> None:
    await cancel_then_resume(engine, tmp_path, seed=1, n=400, pauses=0)


async def test_cancel_racing_a_pause_storm_then_resume(engine: Engine, tmp_path: Path) -> None:
    await cancel_then_resume(engine, tmp_path, seed=2, n=400, pauses=4)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["mem", "surrealkv"], indirect=True)
@pytest.mark.parametrize("seed", range(8))
async def test_cancel_racing_pauses_and_completions_many_seeds(engine: Engine, tmp_path: Path, seed: int) -> None:
    await cancel_then_resume(engine, tmp_path, seed=100 + seed, n=400, pauses=seed % 4 * 3)


# ---- retry and rollback while the workflow runs or is paused -------------------------------------------------------


async def test_retry_of_a_completed_task_while_paused_runs_it_once_more_after_resume(
    engine: Engine, tmp_path: Path
) -> None:
    live = Live(engine)
    spec = make_spec([*many_tasks(100, random.Random(3)), tail(str(tmp_path))], concurrency=8)
    workflow = await engine.submit(spec)
    first = await live.wait_for(workflow, "task.completed", count=5)
    assert first.task is not None
    await engine.pause(workflow)
    await engine.retry(workflow, first.task)
    await engine.resume(workflow)
    gate(str(tmp_path)).set()
    assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
    tasks, events = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED, events_tell_state=False)
    runs = runs_of(engine, workflow, spec)
    assert runs == Counter({**dict.fromkeys(tasks, 1), first.task: 2})
    completions = Counter(e.task for e in events if e.type == "task.completed")
    assert completions == Counter({**dict.fromkeys(tasks, 1), first.task: 2})


# ---- a cancel landing as the last tasks complete -------------------------------------------------------------------


@pytest.mark.parametrize("left", [0, 80])
async def test_a_cancel_landing_as_the_last_tasks_complete_ends_the_workflow_once(engine: Engine, left: int) -> None:
    """Completion or cancellation may win, but the workflow ends once, in a state its tasks and events agree
    with (``Engine.cancel`` reads the workflow row first, a while for 400 tasks, and the run may end meanwhile)."""
    live = Live(engine)
    tasks = many_tasks(400, random.Random(4), shell=False)
    control = when(engine, {"task.completed"}, lambda: engine.cancel(workflow), count=len(tasks) - left)
    workflow = await engine.submit(make_spec(tasks, concurrency=16))
    await engine.wait(workflow)
    await outcome(control)
    final = await engine.wait(workflow)
    assert final in (WorkflowStatus.COMPLETED, WorkflowStatus.CANCELLED)
    await check_consistent(engine, workflow, live, final)
