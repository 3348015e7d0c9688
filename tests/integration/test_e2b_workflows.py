"""Workflows whose tasks run in E2B sandboxes, end to end: engine → e2b SDK → a FAKE E2B cloud.

The cloud is out of reach, so ``tests.support.fake_e2b`` serves a fake of E2B's REST API (sandboxes created, listed,
paused, killed) and a fake of envd (the agent in each sandbox, running the processes on this machine); the SDK is
the real, unmodified one, configured through the environment exactly as a user configures it. What is checked is
what a user of E2B would notice: output, exit codes, no sandbox left running (and so billed), no key anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.sandbox import SandboxError
from engine.sandbox._e2b_pool import E2BPool, record_path
from engine.sandbox.e2b import E2BSandbox
from engine.sandbox.e2b_settings import e2b_settings
from engine.spec import WorkflowSpec
from tests.conformance.sandbox.suite import WAIT_FOR_GO, Transcript
from tests.support.fake_e2b import FakeCloud, fake_e2b_cloud
from tests.support.polling import until
from tests.support.tcp_proxy import tcp_proxy

AGENTDECK = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "agentdeck")


@pytest.fixture
async def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeCloud]:
    async with fake_e2b_cloud(tmp_path, monkeypatch) as fake:
        yield fake


@pytest.fixture
async def engine(cloud: FakeCloud, tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


def e2b_spec(tasks: list[dict[str, Any]], **defaults: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "in-the-cloud",
            "agents": {"sh": {"kind": "shell"}},
            "defaults": {"sandbox": "e2b", **defaults},
            "tasks": tasks,
        }
    )


async def everything_stored(engine: Engine, workflow: str) -> str:
    """Every event and task row of ``workflow`` as text, to look for what must not be there."""
    await engine.recorder.flush()
    events = await engine.stores.events.list(workflow)
    tasks = await engine.stores.tasks.list(workflow)
    return json.dumps([e.model_dump(mode="json") for e in events] + [t.model_dump(mode="json") for t in tasks])


async def output_of(engine: Engine, workflow: str, task: str) -> list[str]:
    await engine.recorder.flush()
    lines: list[str] = []
    for event in await engine.stores.events.list(workflow):
        if event.type == "task.output" and event.task == task:
            lines.extend(event.data.get("lines", []))
    return lines


async def test_a_workflow_runs_in_e2b_sandboxes_and_leaves_none_running(
    engine: Engine, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-4f9a8e7d6c5b")
    wf = await engine.submit(
        e2b_spec(
            [
                {
                    "id": "build",
                    "agent": "sh",
                    "secrets": ["DEPLOY_TOKEN"],
                    "run": 'echo "built with $DEPLOY_TOKEN"; echo oops >&2; echo \'::output::{"ok": true}\'',
                },
                {"id": "test", "agent": "sh", "depends_on": ["build"], "run": "cat .agentdeck/input.json; exit 3"},
            ]
        )
    )
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    build = await engine.stores.tasks.get(wf, "build")
    test = await engine.stores.tasks.get(wf, "test")
    assert build is not None and test is not None
    assert build.status is TaskStatus.COMPLETED and build.output == {"ok": True}
    assert test.status is TaskStatus.FAILED and test.error is not None and test.error.startswith("exit code 3")
    # Output streamed back, the secret redacted, upstream output handed over inside the sandbox.
    assert await output_of(engine, wf, "build") == ["built with ***", "oops"]
    assert any('"build": {"ok": true}' in line for line in await output_of(engine, wf, "test"))
    # Each task got its own sandbox, labelled with where it came from, and each was killed.
    made = list(cloud.api.sandboxes.values())
    assert sorted(s.metadata["agentdeck_task"] for s in made) == ["build", "test"]
    assert {s.metadata["agentdeck_workflow"] for s in made} == {wf}
    assert cloud.api.alive() == []
    # The API key went to E2B, and nowhere else.
    assert all(call.api_key == cloud.key for call in cloud.api.calls)
    stored = await everything_stored(engine, wf)
    assert cloud.key not in stored and "tok-4f9a8e7d6c5b" not in stored
    assert not any(cloud.key in str(c) for c in cloud.envd.process.started)


async def test_a_finished_tasks_sandbox_is_killed_while_the_workflow_goes_on(engine: Engine, cloud: FakeCloud) -> None:
    wf = await engine.submit(
        e2b_spec(
            [
                {"id": "first", "agent": "sh", "run": "echo done"},
                {"id": "hold", "agent": "sh", "sandbox": "local", "depends_on": ["first"], "run": WAIT_FOR_GO},
            ]
        )
    )
    hold_dir = engine.workdir_for(wf, "hold")
    await until(lambda: (hold_dir / ".agentdeck").exists(), "the local task to start")
    (first,) = cloud.api.sandboxes.values()
    await until(lambda: first.state == "killed", "the finished task's sandbox to be killed")
    assert engine.runs[wf].tasks["hold"].status is TaskStatus.RUNNING, "killed while the workflow goes on"

    async def stored_running() -> bool:  # the row follows the run's state through the writer's next batch
        row = await engine.stores.tasks.get(wf, "hold")
        return row is not None and row.status is TaskStatus.RUNNING

    await until(stored_running, "the hold task stored as running")
    (hold_dir / "go").write_text("")
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED


async def test_resuming_a_workflow_kills_a_sandbox_its_dead_engine_left_for_a_finished_task(
    engine: Engine, cloud: FakeCloud
) -> None:
    wf = await engine.submit(
        e2b_spec(
            [
                {"id": "done", "agent": "sh", "run": "true"},
                {"id": "hold", "agent": "sh", "sandbox": "local", "depends_on": ["done"], "run": "sleep 1000"},
            ]
        )
    )
    await until(lambda: wf in engine.runs and engine.runs[wf].is_task_running("hold"), "the local task to run")
    # What a dead engine leaves: a sandbox made for the finished task, recorded beside its directory, never killed.
    dead = E2BPool(e2b_settings())
    leftover = E2BSandbox(engine.workdir_for(wf, "done"), pool=dead)
    await leftover.write_file("x", "")
    (orphan,) = cloud.api.alive()
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    assert orphan.state == "running"
    await engine.resume(wf)  # taken over again: the finished task does not run, its orphan is found all the same
    await until(lambda: orphan.state == "killed", "the orphan sandbox to be killed")
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    assert cloud.api.alive() == []


async def test_tasks_of_one_agent_share_a_sandbox_when_scoped_by_agent(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_E2B_SCOPE", "agent")
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        wf = await engine.submit(
            e2b_spec(
                [
                    {"id": "write", "agent": "sh", "run": "echo kept > ../shared.txt"},
                    {"id": "read", "agent": "sh", "depends_on": ["write"], "run": "cat ../shared.txt"},
                ]
            )
        )
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED
        assert await output_of(engine, wf, "read") == ["kept"]
    assert len(cloud.api.sandboxes) == 1
    assert cloud.api.alive() == []


async def test_cancel_stops_the_command_in_the_sandbox(engine: Engine, cloud: FakeCloud) -> None:
    wf = await engine.submit(e2b_spec([{"id": "long", "agent": "sh", "run": "echo started; exec sleep 1000"}]))
    await until(lambda: sleeping(cloud) != [], "the command to run in the sandbox")
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    assert sleeping(cloud) == []
    assert cloud.api.alive() == []


def sleeping(cloud: FakeCloud) -> list[psutil.Process]:
    """The fake sandbox's ``sleep 1000`` processes (the fake envd runs them on this machine)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        with_home = (proc.info.get("environ") or {}).get("HOME", "")
        if proc.info.get("cmdline") == ["sleep", "1000"] and with_home.startswith(str(cloud.workdir)):
            found.append(proc)
    return found


async def test_fail_fast_while_sandboxes_are_being_made_ends_the_workflow_and_kills_them_all(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    cloud.api.create_delay_s = 1.0  # the local task fails while E2B is still making the others' sandboxes
    tasks = [
        {"id": "fails", "agent": "sh", "sandbox": "local", "run": "exit 1"},
        {"id": "b", "agent": "sh", "run": "sleep 30"},
        {"id": "c", "agent": "sh", "run": "sleep 30"},
    ]
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        wf = await engine.submit(e2b_spec(tasks))
        assert await asyncio.wait_for(engine.wait(wf), 120) is WorkflowStatus.FAILED
        await until(lambda: len(cloud.api.sandboxes) == 2, "E2B to have made both sandboxes")
    # Made for tasks that were cancelled before they knew of them: killed all the same.
    assert cloud.api.alive() == []


async def test_a_run_cancelled_while_it_cleans_up_leaves_the_sandbox_closable(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = E2BPool(e2b_settings())
    sandbox = E2BSandbox(tmp_path / "work" / "wf" / "t", pool=pool)
    sweeping, release = asyncio.Event(), asyncio.Event()
    sweep = E2BSandbox._sweep

    async def slow_sweep(self: E2BSandbox, run: Any) -> None:  # the clean-up after the command, held open
        sweeping.set()
        await release.wait()
        await sweep(self, run)

    monkeypatch.setattr(E2BSandbox, "_sweep", slow_sweep)
    task = asyncio.create_task(sandbox.run("exit 1"))
    await asyncio.wait_for(sweeping.wait(), 60)
    task.cancel()  # as a fail_fast sibling's failure cancels this task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not sandbox.running
    release.set()
    await asyncio.wait_for(sandbox.close(), 60)
    await pool.close()
    assert cloud.api.alive() == []


async def test_pause_freezes_the_command_then_pauses_the_sandbox_and_resume_brings_both_back(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_E2B_PAUSE_AFTER", "0.2")
    pool = E2BPool(e2b_settings())
    sandbox = E2BSandbox(tmp_path / "work" / "wf" / "count", pool=pool)
    transcript = Transcript()
    counter = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"
    task = asyncio.create_task(sandbox.run(counter, on_output=transcript))
    try:
        await transcript.wait_for(lambda lines: len(lines) >= 3, "three counter lines")
        await sandbox.pause()
        # The processes are stopped (state T in /proc), then E2B is asked to pause the sandbox itself.
        (shell,) = [psutil.Process(pid) for pid in sandbox.pids()]
        assert shell.status() == psutil.STATUS_STOPPED
        await until(lambda: [s.state for s in cloud.api.sandboxes.values()] == ["paused"], "the sandbox to be paused")
        frozen_at = len(transcript.text())
        await sandbox.resume()
        assert [s.state for s in cloud.api.sandboxes.values()] == ["running"]
        await transcript.wait_for(lambda lines: len(lines) >= frozen_at + 3, "counter lines after resume")
        assert shell.status() != psutil.STATUS_STOPPED
        await sandbox.kill()
        assert (await asyncio.wait_for(task, 60)).cancelled
        numbers = [int(n) for n in transcript.text()]
        assert numbers == list(range(1, len(numbers) + 1)), "the same process went on counting after the resume"
        routes = [path.rsplit("/", 1)[-1] for _, path in cloud.api.routes]
        assert routes.index("pause") < routes.index("connect")
    finally:
        await sandbox.close()
        await pool.close()
    assert cloud.api.alive() == []


async def test_a_broken_output_stream_is_reattached_and_the_run_goes_on(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tcp_proxy(("127.0.0.1", int(cloud.envd.url.rsplit(":", 1)[1]))) as network:
        monkeypatch.setenv("E2B_SANDBOX_URL", network.url)  # everything to envd goes through the cuttable path
        pool = E2BPool(e2b_settings())
        sandbox = E2BSandbox(tmp_path / "work" / "wf" / "net", pool=pool)
        transcript = Transcript()
        task = asyncio.create_task(sandbox.run(f"echo before; {WAIT_FOR_GO}; echo after; exit 4", on_output=transcript))
        try:
            await transcript.wait_for_line("before")
            network.cut()
            await until(lambda: cloud.envd.process.connects >= 1, "the backend to re-attach to the command")
            await sandbox.write_file("go", "")
            result = await asyncio.wait_for(task, 60)
        finally:
            await sandbox.close()
            await pool.close()
    assert result.exit_code == 4, "the exit status came through the new stream"
    assert transcript.text() == ["before", "after"]


async def test_a_resume_while_envd_is_unreachable_fails_and_leaves_the_task_paused_then_goes_on(
    cloud: FakeCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_E2B_PAUSE_AFTER", "0.2")
    async with tcp_proxy(("127.0.0.1", int(cloud.envd.url.rsplit(":", 1)[1]))) as network:
        monkeypatch.setenv("E2B_SANDBOX_URL", network.url)
        pool = E2BPool(e2b_settings())
        sandbox = E2BSandbox(tmp_path / "work" / "wf" / "net", pool=pool)
        transcript = Transcript()
        task = asyncio.create_task(sandbox.run(f"echo before; {WAIT_FOR_GO}; echo after; exit 5", on_output=transcript))
        try:
            await transcript.wait_for_line("before")
            await sandbox.pause()
            await until(lambda: [s.state for s in cloud.api.sandboxes.values()] == ["paused"], "the sandbox paused")
            await network.down()  # envd unreachable: the sandbox resumes, the command can be neither reached nor thawed
            with pytest.raises(SandboxError, match="E2B"):
                await sandbox.resume()
            assert sandbox.paused, "a resume that failed leaves the task paused, to be resumed again"
            await network.up()
            await sandbox.resume()  # the user tries again once E2B answers
            await until(lambda: cloud.envd.process.connects > 0, "the run to re-attach to its command")
            await sandbox.write_file("go", "")
            result = await asyncio.wait_for(task, 60)
        finally:
            await sandbox.close()
            await pool.close()
    assert result.exit_code == 5
    assert transcript.text() == ["before", "after"]


async def test_a_sandbox_left_by_a_crashed_engine_is_killed_when_its_task_runs_again(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    workdir = tmp_path / "work" / "wf" / "task"
    crashed = E2BPool(e2b_settings())
    first = E2BSandbox(workdir, pool=crashed)
    assert (await first.run("true")).exit_code == 0
    # The engine dies here: nothing is closed, the record of its sandbox stays.
    assert record_path(workdir).exists()
    (leftover,) = cloud.api.alive()
    pool = E2BPool(e2b_settings())
    again = E2BSandbox(workdir, pool=pool)
    try:
        assert (await again.run("true")).exit_code == 0
        assert cloud.api.sandboxes[leftover.sandbox_id].state == "killed"
        assert [s.sandbox_id for s in cloud.api.alive()] != [leftover.sandbox_id]
    finally:
        await again.close()
        await pool.close()
    assert cloud.api.alive() == []
    assert not record_path(workdir).exists()


async def test_taking_a_workflow_over_kills_the_sandboxes_its_crashed_engine_left(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    workflow_dir = tmp_path / "work" / "wf-1"
    crashed = E2BPool(e2b_settings())
    for task in ("a", "b"):
        assert (await E2BSandbox(workflow_dir / task, pool=crashed).run("true")).exit_code == 0
    assert len(cloud.api.alive()) == 2  # the engine died holding both
    assert await E2BPool(e2b_settings()).sweep(workflow_dir) == 2
    assert cloud.api.alive() == []
    assert not list(workflow_dir.glob(".*agentdeck-e2b*"))


async def test_a_sandbox_that_cannot_be_made_fails_the_task_with_the_reason_and_retries_it(
    engine: Engine, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_E2B_TEMPLATE", "no-such-template")
    cloud.api.known_templates = {"base"}
    wf = await engine.submit(e2b_spec([{"id": "a", "agent": "sh", "run": "true"}], retries=1, retry_backoff=0.01))
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    task = await engine.stores.tasks.get(wf, "a")
    assert task is not None and task.attempts == 2
    assert task.error is not None and task.error.startswith("could not create an E2B sandbox:"), task.error
    assert "no-such-template" in task.error and cloud.key not in task.error


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "agentdeck: the E2B sandbox needs an API key: set E2B_API_KEY"),
        ("e2b_wrong_key", "agentdeck: E2B cannot be used: E2B rejected the API key"),
    ],
)
async def test_run_without_a_usable_key_exits_3_before_anything_starts(
    cloud: FakeCloud, tmp_path: Path, key: str | None, message: str
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: cloud\nagents:\n  sh: {kind: shell}\ntasks:\n  - {id: a, agent: sh, run: 'echo hi'}\n")
    env = {k: v for k, v in os.environ.items() if k != "E2B_API_KEY"}
    env.update({"AGENTDECK_SANDBOX": "e2b", "XDG_DATA_HOME": str(tmp_path / "data")})
    if key is not None:
        env["E2B_API_KEY"] = key
    # Not subprocess.run: the fake cloud answers from this test's event loop, which must keep running.
    proc = await asyncio.create_subprocess_exec(
        AGENTDECK,
        *["run", str(flow), "--headless", "--db", f"surrealkv://{tmp_path / 'state.db'}"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, raw = await asyncio.wait_for(proc.communicate(), 120)
    stderr = raw.decode()
    assert proc.returncode == 3, stderr
    assert stderr.startswith(message), stderr
    assert "Traceback" not in stderr
    assert key is None or key not in stderr
    assert not (tmp_path / "state.db").exists(), "something was stored before the check"
