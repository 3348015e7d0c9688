"""``agentdeck workers``: the workers there are, what each runs, and which are lost.

Real parts: a ``redis-server`` of the test's own (with a password), worker processes started with the command line,
the test's engine as coordinator, and ``agentdeck workers`` run as a command.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.workers.roster import LOST_AFTER_LEASES
from tests.integration.test_cli_engine import clean_env
from tests.integration.test_workers import AGENTDECK, LEASE_S, coordinator, spec, workers
from tests.support.polling import until
from tests.support.redis_server import PASSWORD, RedisServer, own_redis, unused_port

HOLD = "echo holding; while [ ! -f go ]; do sleep 0.05; done"


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisServer]:
    monkeypatch.setenv("AGENTDECK_WORKER_LEASE", LEASE_S)
    async with own_redis(tmp_path / "redis") as started:
        yield started


def listing(url: str | None, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    args = [AGENTDECK, "workers", *flags] + (["--redis", url] if url else [])
    return subprocess.run(args, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)


def listed(url: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    result = listing(url, tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}


async def test_workers_lists_each_worker_with_what_it_runs_and_tells_a_dead_one_from_a_stopped_one(
    server: RedisServer, tmp_path: Path
) -> None:
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=2, concurrency=3) as (first, second):
            await until(lambda: first.ready() and second.ready(), limit_s=60)
            wf = await engine.submit(spec([{"id": "hold", "agent": "sh", "run": HOLD}]))

            def runner() -> str | None:
                rows = listed(server.url, tmp_path)
                return next((name for name, row in rows.items() if row["running"] == [f"{wf}/hold"]), None)

            busy_name = await until(lambda: asyncio.to_thread(runner), "a worker listed as running the task")
            busy, idle = (first, second) if busy_name == first.name else (second, first)
            rows = listed(server.url, tmp_path)
            assert {name: (row["state"], row["concurrency"]) for name, row in rows.items()} == {
                first.name: ("up", 3),
                second.name: ("up", 3),
            }
            assert rows[idle.name]["running"] == [] and rows[busy.name]["taken"] == 1

            text = listing(server.url, tmp_path)
            assert text.returncode == 0, text.stderr
            header, *lines = text.stdout.splitlines()
            assert header.split() == ["WORKER", "STATE", "RUNNING", "SEEN", "UP", "TAKEN", "TASKS"]
            busy_line = next(line for line in lines if line.startswith(busy.name))
            assert busy_line.split()[1:3] == ["up", "1/3"] and busy_line.endswith(f"{wf}/hold")
            assert PASSWORD not in text.stdout + text.stderr

            (busy.root / wf / "hold" / "go").touch()
            await engine.wait(wf)
            busy.process.send_signal(signal.SIGTERM)  # a clean stop: it says goodbye
            idle.process.send_signal(signal.SIGKILL)  # a death: it falls silent
            await asyncio.to_thread(busy.process.wait, 30)
            limit = float(LEASE_S) * LOST_AFTER_LEASES * 5 + 30

            def after() -> dict[str, str]:
                return {name: row["state"] for name, row in listed(server.url, tmp_path).items()}

            await until(lambda: asyncio.to_thread(lambda: after() == {idle.name: "lost"}), "only the dead one, lost",
                        limit_s=limit)  # fmt: skip
            lost_line = listing(server.url, tmp_path).stdout.splitlines()[1]
            assert lost_line.split()[:3] == [idle.name, "lost", "-/3"]


def test_workers_without_redis_is_bad_input_and_an_unreachable_one_exit_3(tmp_path: Path) -> None:
    missing = listing(None, tmp_path)
    assert missing.returncode == 2 and "give --redis URL or set AGENTDECK_REDIS" in missing.stderr
    down = listing(f"redis://:{PASSWORD}@127.0.0.1:{unused_port()}/0", tmp_path)
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr, down.stderr
    assert PASSWORD not in down.stderr and "Traceback" not in down.stderr
