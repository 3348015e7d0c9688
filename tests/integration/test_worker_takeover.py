"""A workflow taken over from an engine that died (``agentdeck resume``) never runs a task twice at once on workers.

The dead engine's commands go on running on their workers until its ``alive`` key in Redis lapses (two leases). An
engine that resumes the workflow first kills them, and waits until they ended, before it hands out its own: the
task's trace shows the old run end before the new one starts.

Real parts: a ``redis-server`` of the test's own (with a password), a worker process, ``agentdeck run --headless``
in a process of its own SIGKILLed mid-task, and the resuming engine in the test on the same ``surrealkv://`` files.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from tests.integration.test_cli_engine import RunningWorkflow, clean_env
from tests.integration.test_workers import LEASE_S, workers
from tests.support.polling import until
from tests.support.redis_server import RedisServer, own_redis

# Appends "start PID" when it starts and "end PID" when it is stopped (SIGTERM); ends by itself once ``go`` exists.
TRACED = """
name: takeover
defaults: {sandbox: worker}
agents: {sh: {kind: shell}}
tasks:
  - id: long
    agent: sh
    run: |
      echo "start $$" >> trace
      trap 'echo "end $$" >> trace; exit 143' TERM
      echo running
      while [ ! -f go ]; do sleep 0.05; done
"""


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisServer]:
    monkeypatch.setenv("AGENTDECK_WORKER_LEASE", LEASE_S)
    async with own_redis(tmp_path / "redis") as started:
        yield started


def trace(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_resumed_workflow_stops_the_dead_engines_command_before_running_the_task_again(
    server: RedisServer, tmp_path: Path
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(TRACED)
    db_url = f"surrealkv://{tmp_path / 'state'}"
    with workers(server, tmp_path, count=1, concurrency=4) as (worker,):
        await until(worker.ready, limit_s=60)
        env = clean_env(tmp_path, AGENTDECK_WORKER_LEASE=LEASE_S)
        args = ["run", str(flow), "--headless", "--json", "--db", db_url, "--redis", server.url]
        first = RunningWorkflow(args, env, tmp_path / "first.err")
        try:
            workflow = first.wait_for(lambda e: True, "the first event")["workflow"]
            first.wait_for(lambda e: e["type"] == "task.output" and e.get("task") == "long", "the command running")
            first.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait_exit, 60)
        finally:
            first.stop()
        traced = worker.root / workflow / "long" / "trace"
        assert trace(traced) == ["start"], "the dead engine's command still runs on its worker"

        async with connect(db_url) as db, Engine(db, redis_url=server.url, workdir_root=tmp_path / "engine") as engine:
            await engine.resume_workflow(workflow)
            await until(lambda: trace(traced).count("start") == 2, "the task running again", limit_s=120)
            assert trace(traced) == ["start", "end", "start"], "the old run ended before the new one started"
            (traced.parent / "go").touch()
            async with asyncio.timeout(120):
                assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
