"""The engine against real parts: embedded SurrealDB, real subprocesses in the local sandbox, the in-process bus.

Each test drives the public ``Engine`` API the CLI and the dashboard use, and asserts what a user would see:
task states, outputs, events, and the process table.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from db import connect
from db.models import Event, TaskStatus, WorkflowStatus
from engine import checkpoints
from engine.engine import Engine
from engine.events import output_lines
from engine.metrics import MetricsCollector
from engine.spec import WorkflowSpec
from tests.integration.workflows import steps
from tests.support.agent_kinds import registered_echo_kind
from tests.support.polling import until

STEPS = "tests.integration.workflows.steps"


def spec(tasks: list[Any], **extra: Any) -> WorkflowSpec:
    agents = {
        "sh": {"kind": "shell"},
        "py": {"kind": "python", "callable": f"{STEPS}:echo_upstream"},
        "noop": {"kind": "python", "callable": f"{STEPS}:noop"},
        "rec": {"kind": "python", "callable": f"{STEPS}:record"},
    }
    agents.update(extra.pop("agents", {}))
    return WorkflowSpec.model_validate({"name": "test", "agents": agents, "tasks": tasks, **extra})


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def events_of(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


async def test_dependencies_run_in_order_and_outputs_flow_downstream(engine: Engine) -> None:
    wf = await engine.submit(
        spec(
            [
                {"id": "make", "agent": "sh", "run": 'echo building; echo \'::output::{"artifact": "app.whl"}\''},
                {"id": "check", "agent": "py", "depends_on": ["make"], "input": {"strict": True}},
            ]
        )
    )
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    check = await engine.stores.tasks.get(wf, "check")
    assert check is not None
    assert check.output == {"input": {"strict": True}, "upstream": {"make": {"artifact": "app.whl"}}}
    types = [(e.type, e.task) for e in await events_of(engine, wf)]
    assert types.index(("task.completed", "make")) < types.index(("task.started", "check"))
    assert ("task.output", "make") in types


async def test_200_tasks_at_concurrency_50_complete_with_a_gap_free_event_stream(engine: Engine) -> None:
    tasks = [{"id": f"t{i}", "agent": "noop", "depends_on": [f"t{i - 50}"] if i >= 50 else []} for i in range(200)]
    subscription = engine.bus.subscribe()
    wf = await engine.submit(spec(tasks, concurrency=50))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    stored = await events_of(engine, wf)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert stored[0].type == "workflow.created" and stored[-1].type == "workflow.completed"
    assert sum(1 for e in stored if e.type == "task.completed") == 200
    live: list[int] = []
    async with asyncio.timeout(30):
        async for event in subscription:
            live.append(event.seq)
            if event.type == "workflow.completed":
                break
    await subscription.close()
    assert live == list(range(1, len(stored) + 1)), "the live stream had a gap or a duplicate"


async def test_agent_concurrency_limit_is_respected(engine: Engine) -> None:
    steps.PEAK.clear()
    agents = {"limited": {"kind": "python", "callable": f"{STEPS}:track_concurrency", "concurrency": 3}}
    tasks = [{"id": f"t{i}", "agent": "limited"} for i in range(12)]
    wf = await engine.submit(spec(tasks, agents=agents, concurrency=10))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert steps.PEAK["limited"] == 3


async def test_a_task_that_fails_once_succeeds_on_retry_in_the_same_workdir(engine: Engine) -> None:
    flaky = "if [ ! -f .tried ]; then touch .tried; echo not yet >&2; exit 1; fi; echo fine"
    wf = await engine.submit(
        spec([{"id": "flaky", "agent": "sh", "run": flaky, "retries": 2}], defaults={"retry_backoff": 0.05})
    )
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "flaky")
    assert task is not None and task.attempts == 2
    types = [e.type for e in await events_of(engine, wf) if e.task == "flaky"]
    assert types.count("task.started") == 2 and "task.retrying" in types


async def test_a_registered_agent_kind_runs_like_a_built_in_one(engine: Engine) -> None:
    with registered_echo_kind():
        agents = {"greeter": {"kind": "echo", "options": {"prefix": "hello "}}}
        greet = {"id": "greet", "agent": "greeter", "input": {"text": "world"}, "depends_on": ["first"]}
        tasks = [{"id": "first", "agent": "noop"}, greet]
        wf = await engine.submit(spec(tasks, agents=agents))
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "greet")
    assert task is not None and task.output == {"said": "hello world", "upstream": ["first"]}
    assert await _output_lines(engine, wf, "greet") == ["hello world"]


async def test_retries_wait_what_the_spec_says(engine: Engine) -> None:
    workflow = spec([{"id": "bad", "agent": "sh", "run": "exit 1", "retries": 3}], defaults={"retry_backoff": 0.05})
    wf = await engine.submit(workflow)
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    delays = [e.data["delay_s"] for e in await events_of(engine, wf) if e.type == "task.retrying"]
    assert delays == [workflow.defaults.backoff_before(attempt) for attempt in (2, 3, 4)] == [0.05, 0.1, 0.2]


async def test_agentdeck_sandbox_applies_unless_the_workflow_or_task_names_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTDECK_SANDBOX", "e2b")  # without an E2B key: a task sent there fails saying so
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    tasks = [
        {"id": "follows", "agent": "sh", "run": "true"},
        {"id": "local", "agent": "sh", "run": "true", "sandbox": "local"},
    ]
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        follows = await engine.submit(spec(tasks, failure_policy="continue"))
        chosen = await engine.submit(spec(tasks, defaults={"sandbox": "local"}))
        assert await engine.wait(follows) is WorkflowStatus.FAILED
        assert await engine.wait(chosen) is WorkflowStatus.COMPLETED
        states = {t.key: (t.status, t.error) for t in await engine.stores.tasks.list(follows)}
    assert states["local"] == (TaskStatus.COMPLETED, None)
    status, error = states["follows"]
    assert status is TaskStatus.FAILED and error == (
        "the E2B sandbox needs an API key: set E2B_API_KEY (create a key at https://e2b.dev/dashboard?tab=keys), "
        "or run the tasks locally with AGENTDECK_SANDBOX=local"
    )


async def test_fail_fast_skips_downstream_and_continue_keeps_independent_branches(engine: Engine) -> None:
    tasks = [
        {"id": "bad", "agent": "sh", "run": "exit 3"},
        {"id": "after_bad", "agent": "noop", "depends_on": ["bad"]},
        {"id": "independent", "agent": "sh", "run": "sleep 0.5; echo done"},
    ]
    wf = await engine.submit(spec(tasks, failure_policy="continue"))
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    states = {t.key: t.status for t in await engine.stores.tasks.list(wf)}
    assert states == {
        "bad": TaskStatus.FAILED,
        "after_bad": TaskStatus.SKIPPED,
        "independent": TaskStatus.COMPLETED,
    }
    bad = await engine.stores.tasks.get(wf, "bad")
    assert bad is not None and bad.error is not None and "exit code 3" in bad.error

    wf2 = await engine.submit(spec(tasks, failure_policy="fail_fast"))
    assert await engine.wait(wf2) is WorkflowStatus.FAILED
    states2 = {t.key: t.status for t in await engine.stores.tasks.list(wf2)}
    assert states2["after_bad"] is TaskStatus.SKIPPED
    assert states2["independent"] in (TaskStatus.CANCELLED, TaskStatus.SKIPPED)


async def test_timeout_fails_the_task_and_kills_its_processes(engine: Engine) -> None:
    unique = f"sleep 1000.{os.getpid()}"  # a distinct command line, so other tests' sleepers do not count
    wf = await engine.submit(spec([{"id": "hang", "agent": "sh", "run": f"{unique} & wait", "timeout": "1s"}]))

    async def sleeping() -> bool:
        return bool(_sleepers(unique))

    await until(sleeping)
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    task = await engine.stores.tasks.get(wf, "hang")
    assert task is not None and task.error == "timed out after 1s"
    assert not _sleepers(unique)


def _sleepers(cmdline: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if cmdline in " ".join(proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def _output_lines(engine: Engine, wf: str, task: str) -> list[str]:
    events = await events_of(engine, wf)
    return [line for e in events if e.type == "task.output" and e.task == task for line in output_lines(e)]


async def test_cancel_stops_running_processes_and_skips_downstream(engine: Engine) -> None:
    marker = f"agentdeck-cancel-{os.getpid()}"
    tasks = [
        {"id": "long", "agent": "sh", "run": f"sh -c 'sleep 1000; echo {marker}' & sleep 1000 & echo started; wait"},
        {"id": "after", "agent": "noop", "depends_on": ["long"]},
    ]
    wf = await engine.submit(spec(tasks))

    async def started() -> bool:
        return "started" in await _output_lines(engine, wf, "long")

    await until(started)
    run = engine.runs[wf]
    pids = run._sandboxes["long"].pids()
    assert len(pids) >= 3
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left after cancel: {alive}"
    states = {t.key: t.status for t in await engine.stores.tasks.list(wf)}
    assert states == {"long": TaskStatus.CANCELLED, "after": TaskStatus.SKIPPED}


async def test_pause_freezes_a_counting_process_and_resume_continues_it(engine: Engine) -> None:
    counter = "i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo $i; sleep 0.05; done"
    wf = await engine.submit(spec([{"id": "count", "agent": "sh", "run": counter}]))

    async def counting() -> bool:
        return len(await _output_lines(engine, wf, "count")) >= 5

    await until(counting)
    await engine.pause(wf)
    workflow = await engine.stores.workflows.get(wf)
    assert workflow is not None and workflow.status is WorkflowStatus.PAUSED
    at_pause = len(await _output_lines(engine, wf, "count"))
    await asyncio.sleep(1.0)
    during = await _output_lines(engine, wf, "count")
    assert len(during) == at_pause, "the process kept printing while paused"
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    lines = await _output_lines(engine, wf, "count")
    assert lines == [str(i) for i in range(1, 101)], "the counter restarted or lost lines across the pause"
    types = [e.type for e in await events_of(engine, wf)]
    assert "workflow.paused" in types and "task.paused" in types and "task.resumed" in types


async def test_pause_stops_new_tasks_from_starting(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    tasks = [
        {"id": "first", "agent": "sh", "run": "sleep 0.5"},
        {"id": "second", "agent": "rec", "depends_on": ["first"], "input": {"log": str(log), "delay": 0}},
    ]
    wf = await engine.submit(spec(tasks))

    async def first_running() -> bool:
        task = await engine.stores.tasks.get(wf, "first")
        return task is not None and task.status is TaskStatus.RUNNING

    await until(first_running)
    await engine.pause(wf)
    await asyncio.sleep(1.0)  # "first" would have finished and "second" started by now, were it not paused
    second = await engine.stores.tasks.get(wf, "second")
    assert second is not None and second.status in (TaskStatus.PENDING, TaskStatus.QUEUED)
    assert not log.exists()
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert log.read_text() == "second\n"


async def test_rollback_reruns_exactly_the_tasks_after_the_checkpoint(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    go = tmp_path / "go"
    keys = ["a", "b", "c", "d"]
    tasks: list[dict[str, Any]] = [
        {"id": k, "agent": "rec", "input": {"log": str(log), "delay": 0}, "depends_on": [keys[i - 1]] if i else []}
        for i, k in enumerate(keys)
    ]
    tasks[2]["input"]["wait_for"] = str(go)  # c waits until b's checkpoint is stored: they cannot share one
    wf = await engine.submit(spec(tasks))

    async def b_checkpointed() -> bool:
        return any("b" in c.task_states for c in await engine.stores.checkpoints.list(wf))

    await until(b_checkpointed)
    go.touch()
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert log.read_text().split() == keys
    cps = await engine.stores.checkpoints.list(wf)
    after_b = next(c for c in cps if "b" in c.task_states)
    assert "c" not in after_b.task_states
    await engine.rollback(wf, after_b.id)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert log.read_text().split() == [*keys, "c", "d"], "rollback must re-run only what came after it"
    history = await engine.stores.checkpoints.list(wf)
    assert any(c.reason == f"rolled back to #{after_b.number}" for c in history), "rollback keeps history"
    assert "workflow.rolled_back" in [e.type for e in await events_of(engine, wf)]


async def test_retry_runs_one_task_again_with_its_upstream_output(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    tasks = [
        {"id": "a", "agent": "rec", "input": {"log": str(log), "delay": 0}},
        {"id": "b", "agent": "rec", "input": {"log": str(log), "delay": 0}, "depends_on": ["a"]},
    ]
    wf = await engine.submit(spec(tasks))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    await engine.retry(wf, "b")
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert log.read_text().split() == ["a", "b", "b"]


async def test_secrets_are_passed_only_when_named_and_redacted_from_output(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_TEST_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("AGENTDECK_TEST_OTHER", "not-passed")
    tasks = [
        {
            "id": "named",
            "agent": "sh",
            "run": 'echo "token=$AGENTDECK_TEST_TOKEN"',
            "secrets": ["AGENTDECK_TEST_TOKEN"],
        },
        {"id": "unnamed", "agent": "sh", "run": 'echo "other=${AGENTDECK_TEST_OTHER:-missing}"'},
    ]
    wf = await engine.submit(spec(tasks))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert await _output_lines(engine, wf, "named") == ["token=***"]
    assert await _output_lines(engine, wf, "unnamed") == ["other=missing"]
    stored = " ".join(str(e.model_dump()) for e in await events_of(engine, wf))
    assert "s3cr3t-value" not in stored


async def test_each_completion_is_checkpointed_with_only_what_changed(engine: Engine) -> None:
    wf = await engine.submit(
        spec(
            [{"id": "a", "agent": "sh", "run": "true"}, {"id": "b", "agent": "sh", "run": "true", "depends_on": ["a"]}]
        )
    )
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    cps = await engine.stores.checkpoints.list(wf)
    assert [(c.number, c.task) for c in cps] == [(1, "a"), (2, "b")]
    first, _ = checkpoints.state_at(cps, 1)
    second, _ = checkpoints.state_at(cps, 2)
    assert first["a"]["status"] == "completed" and "b" not in first
    assert second["a"]["status"] == second["b"]["status"] == "completed"
    assert not cps[1].full and "a" not in cps[1].task_states, "a completion checkpoint stores only what changed"


async def test_completions_landing_in_one_write_share_a_checkpoint_covering_each(engine: Engine) -> None:
    tasks = [{"id": f"t{i}", "agent": "noop"} for i in range(300)]
    wf = await engine.submit(spec(tasks))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    cps = await engine.stores.checkpoints.list(wf)
    assert [c.number for c in cps] == list(range(1, len(cps) + 1))
    covered = [key for c in cps for key in c.task_states]
    assert sorted(covered) == sorted(t["id"] for t in tasks), "every completion is in exactly one checkpoint"
    state, _ = checkpoints.state_at(cps, cps[-1].number)
    assert all(state[t["id"]]["status"] == "completed" for t in tasks)
    events = [e for e in await events_of(engine, wf) if e.type == "checkpoint.created"]
    assert [e.data["number"] for e in events] == [c.number for c in cps]
    for checkpoint in cps:
        if len(checkpoint.task_states) > 1:
            assert checkpoint.task is None and f"{len(checkpoint.task_states)} tasks completed" in checkpoint.reason


async def test_a_flush_asked_for_while_another_runs_stores_each_measure_once(engine: Engine) -> None:
    """The periodic flush and one asked for (the end of a run, a test) used to store the same batch twice: token
    counts summed to twice the truth on a busy machine."""
    collector = MetricsCollector(engine.stores.metrics, batch_size=7)
    for i in range(50):
        collector.observe("llm_input_tokens", 100, agent="coder", workflow=f"wf-flush-{i % 5}")
        collector._close_interval()  # one row per measure: several batches to store
    await asyncio.gather(collector.flush(), collector.flush(), collector.flush())
    stored = [
        m for i in range(5) for m in await engine.stores.metrics.query("llm_input_tokens", workflow=f"wf-flush-{i}")
    ]
    assert sum(m.value for m in stored) == 50 * 100
    assert len(stored) == 50


async def test_metrics_are_recorded(engine: Engine) -> None:
    wf = await engine.submit(spec([{"id": "a", "agent": "sh", "run": "sleep 1.5"}]))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    await engine.metrics.flush()
    assert [m.value for m in await engine.stores.metrics.query("tasks_completed", workflow=wf)] == [1.0]
    assert await engine.stores.metrics.query("task_duration_s", workflow=wf)
    rss = await engine.stores.metrics.query("rss_mb", workflow=wf)
    assert rss and all(m.value > 0 for m in rss), "RSS of the sandbox process was not sampled"


async def test_an_engine_abandoned_while_a_workflow_runs_closes_and_leaves_it_resumable(tmp_path: Path) -> None:
    """A second Ctrl-C: ``abandon`` then ``close`` stores nothing more, yet must not wait for it (it hung)."""
    url = f"surrealkv://{tmp_path / 'state.db'}"
    async with connect(url) as db:
        engine = Engine(db, workdir_root=tmp_path / "work")
        await engine.start()
        wf = await engine.submit(spec([{"id": "long", "agent": "sh", "run": "sleep 60"}]))
        await until(lambda: engine.runs[wf].tasks["long"].status is TaskStatus.RUNNING)
        engine.abandon()
        async with asyncio.timeout(60):
            await engine.close()
        found = await Engine(db).stores.workflows.get(wf)
    assert found is not None and found.status in (WorkflowStatus.RUNNING, WorkflowStatus.STOPPED)
