"""Controls and failures racing the coordinator loop (issue 9, point 5): each test here is a deterministic
reproduction of an interleaving that breaks the engine's guarantees, plus the randomized rollback runs that found
them. The invariants are ``fault_support.check_consistent``'s.

- A task cancelled before its first step (fail_fast, rollback) never leaves ``WorkflowRun._running``: the run
  never ends.
- A rollback awaits the database while the coordinator loop goes on: the loop may end the run meanwhile, or start
  tasks whose state the rollback then overwrites while they run.
- A control that lands after the run decided how it ended (while it stores that) is applied to a finished run.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.integration.fault_support import (
    FINAL_EVENTS,
    Live,
    check_consistent,
    make_spec,
    outcome,
    runs_of,
    tail,
    when,
)
from tests.integration.test_fault_races import pause_resume_storm
from tests.integration.workflows.fault_steps import CALLS, gate

#: Far more than any of these runs needs: a run that has not ended by then never will.
ENDS_WITHIN_S = 30


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def ended(engine: Engine, workflow: str) -> WorkflowStatus:
    try:
        async with asyncio.timeout(ENDS_WITHIN_S):
            return await engine.wait(workflow)
    except TimeoutError:
        run = engine.runs[workflow]
        stuck = {key: handle for key, handle in run._running.items()}
        pytest.fail(f"the run never ended; left in _running: {stuck}; states: {[t.status for t in run.tasks.values()]}")


# ---- a task cancelled before its first step ------------------------------------------------------------------------


async def test_fail_fast_ends_the_run_when_a_task_fails_before_its_siblings_started(engine: Engine) -> None:
    """``bad`` fails in its first step (an async step that raises at once); ``_fail`` cancels its siblings, which
    were created in the same pass of the loop and have not run a step yet: cancelled before they start, their
    ``_run_task`` never runs its ``finally``, they stay in ``_running``, and the loop waits for them forever."""
    live = Live(engine)
    spec = make_spec([{"id": "bad", "agent": "flaky"}, *({"id": f"q{i}", "agent": "quick"} for i in range(3))])
    workflow = await engine.submit(spec)
    assert await ended(engine, workflow) is WorkflowStatus.FAILED
    tasks, _ = await check_consistent(engine, workflow, live, WorkflowStatus.FAILED)
    assert tasks["bad"].status is TaskStatus.FAILED
    assert {tasks[f"q{i}"].status for i in range(3)} <= {TaskStatus.SKIPPED, TaskStatus.CANCELLED}


# ---- rollback while tasks run --------------------------------------------------------------------------------------


async def roll_back_to_a_while_b_runs(engine: Engine, live: Live, spec: WorkflowSpec, tmp_path: Path) -> str:
    """Run ``spec`` until ``a`` and the gated ``b`` have started, roll back to ``a``'s checkpoint, open the gate;
    the workflow must complete, consistent with what was published. Returns its id."""
    workflow = await engine.submit(spec)
    await live.wait_for(workflow, "task.started", count=2)
    checkpoint = (await live.wait_for(workflow, "checkpoint.created")).data["checkpoint"]
    await engine.rollback(workflow, checkpoint)
    gate(str(tmp_path)).set()
    assert await ended(engine, workflow) is WorkflowStatus.COMPLETED
    await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED, events_tell_state=False)
    return workflow


async def test_rollback_of_the_only_running_task_runs_it_again(engine: Engine, tmp_path: Path) -> None:
    """``b`` is the only task left and it runs; roll back to ``a``'s checkpoint. The rollback resets ``b`` and
    cancels it, then awaits the database (``apply_rollback``): meanwhile the loop sees nothing running and nothing
    ready, skips ``b`` as "never became ready" and ends the run failed with no failed task; the rollback's events
    follow the workflow's end."""
    live = Live(engine)
    spec = make_spec([{"id": "a", "agent": "quick"}, {**tail(str(tmp_path)), "id": "b", "depends_on": ["a"]}])
    workflow = await roll_back_to_a_while_b_runs(engine, live, spec, tmp_path)
    assert CALLS[(workflow, "a")] == 1 and CALLS[(workflow, "b")] == 2


async def test_rollback_while_a_task_waits_for_a_free_slot(engine: Engine, tmp_path: Path) -> None:
    """Concurrency 1: ``b`` runs, ``c`` waits for the slot; roll back to ``a``'s checkpoint. Cancelling ``b`` frees
    the slot and the loop starts ``c`` while the rollback awaits the database; the rollback then restores ``c`` to
    pending in memory while it runs, so ``c``'s completion is refused ("not wanted") and ``c`` is left pending in
    no ready queue: skipped as "never became ready", the workflow failed with no failed task."""
    live = Live(engine)
    spec = make_spec(
        [
            {"id": "a", "agent": "quick"},
            {**tail(str(tmp_path)), "id": "b", "depends_on": ["a"]},
            {"id": "c", "agent": "quick", "depends_on": ["a"], "input": {"delay": 0.05}},
        ],
        concurrency=1,
    )
    workflow = await roll_back_to_a_while_b_runs(engine, live, spec, tmp_path)
    assert CALLS[(workflow, "a")] == 1


async def rollback_while_running(engine: Engine, tmp_path: Path, seed: int, n: int) -> None:
    """Roll back to an early checkpoint while tasks run and more wait for a free slot: the workflow completes,
    every task is completed, the tasks completed at the checkpoint never ran again, every other one completed once
    after the rollback."""
    rng = random.Random(seed)
    live = Live(engine)
    tasks: list[dict[str, Any]] = [
        {"id": f"r{i:03d}", "agent": "quick", "input": {"delay": rng.uniform(0.005, 0.02)}} for i in range(n)
    ]
    for i, task in enumerate(tasks):  # a few chains, so some tasks wait on others
        if i >= 8 and rng.random() < 0.5:
            task["depends_on"] = [f"r{i - 8:03d}"]
    spec = make_spec([*tasks, tail(str(tmp_path))], concurrency=4)
    workflow = await engine.submit(spec)
    early = await live.wait_for(workflow, "checkpoint.created", count=rng.randint(2, 5))
    await live.wait_for(workflow, "task.completed", count=n // 3)
    await engine.rollback(workflow, early.data["checkpoint"])
    gate(str(tmp_path)).set()
    assert await ended(engine, workflow) is WorkflowStatus.COMPLETED
    stored, events = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED, events_tell_state=False)
    rolled = next(e for e in events if e.type == "workflow.rolled_back")
    kept = set(stored) - set(rolled.data["rerun"])
    runs = runs_of(engine, workflow, spec)
    assert {k: runs[k] for k in kept} == dict.fromkeys(kept, 1), "a task completed at the checkpoint ran again"
    completions = Counter(e.task for e in events if e.type == "task.completed" and e.seq > rolled.seq)
    assert completions == Counter(dict.fromkeys(rolled.data["rerun"], 1)), "after the rollback: not each rerun once"


@pytest.mark.parametrize("seed", range(3))
async def test_rollback_while_tasks_run(engine: Engine, tmp_path: Path, seed: int) -> None:
    await rollback_while_running(engine, tmp_path, seed=seed, n=120)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
async def test_rollback_while_tasks_run_many_seeds(engine: Engine, tmp_path: Path, seed: int) -> None:
    await rollback_while_running(engine, tmp_path, seed=100 + seed, n=120)


# ---- a control landing as the run ends -----------------------------------------------------------------------------


async def test_a_resume_landing_as_a_paused_run_ends_leaves_it_completed(engine: Engine, tmp_path: Path) -> None:
    """Pause; the last task completes anyway (it has no step boundary) and the run ends; a resume arriving while
    the run stores its end sets the workflow ``running`` after ``completed`` (and publishes ``workflow.resumed``
    after ``workflow.completed``): a finished workflow offered for crash recovery."""
    live = Live(engine)
    workflow = await engine.submit(make_spec([tail(str(tmp_path))]))
    await live.wait_for(workflow, "task.started")
    await engine.pause(workflow)
    control = when(engine, FINAL_EVENTS, lambda: engine.resume(workflow))
    gate(str(tmp_path)).set()
    assert await ended(engine, workflow) is WorkflowStatus.COMPLETED
    await live.wait_for(workflow, "workflow.completed")
    await outcome(control)
    await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)


async def test_a_retry_landing_as_the_run_ends_is_carried_out_or_refused(engine: Engine) -> None:
    """A retry arriving while the run stores its end is accepted (no error) by the finished run: ``b`` is reset
    and queued, but nothing schedules it any more — a completed workflow with a queued task, the retry lost."""
    live = Live(engine)
    spec = make_spec([{"id": "a", "agent": "quick"}, {"id": "b", "agent": "quick", "depends_on": ["a"]}])
    control = when(engine, FINAL_EVENTS, lambda: engine.retry(workflow, "b"))
    workflow = await engine.submit(spec)
    assert await ended(engine, workflow) is WorkflowStatus.COMPLETED
    await live.wait_for(workflow, "workflow.completed")
    said = await outcome(control)
    final = await ended(engine, workflow)
    await check_consistent(engine, workflow, live, final, events_tell_state=False)
    assert final is WorkflowStatus.COMPLETED
    if said == "ok":
        assert CALLS[(workflow, "b")] == 2, "the retry was accepted, but b never ran again"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
async def test_pause_resume_storm_for_a_whole_run_of_400_tasks(engine: Engine, tmp_path: Path, seed: int) -> None:
    """Pauses and resumes until the run is over: one lands while the run stores its end (the last task completed,
    the workflow's final event appended), and the finished run accepts it — ``workflow.paused`` after
    ``workflow.completed``, the workflow stored ``paused``; the storm's next resume then finds no run and starts a
    new one (``resume_workflow``), which ends ``completed`` a second time."""
    await pause_resume_storm(engine, tmp_path, seed=seed, n=400, pauses=None)
