"""A worker when things around it go wrong: a coordinator that dies while its paused command waits, the tasks stream
deleted under it, dead workers left in the group, and a stop while a command's output is held back.

Real parts: a ``redis-server`` of the test's own, the worker's own loop (``engine.workers.worker.Worker``, in the
test's process where the test needs to look at its slots; the ``agentdeck worker`` command where it reads what the
worker prints), real commands in its local sandbox. The coordinator's side is written by hand here (its ``alive``
key, run requests, a reply stream nobody reads): the point is what the worker does, whoever sent the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis

from engine.workers.protocol import Keys, Reply, RunRequest, WorkerSettings
from engine.workers.worker import FORGET_AFTER_LEASES, Worker
from tests.integration.test_workers import AGENTDECK
from tests.support.polling import until
from tests.support.redis_server import RedisServer, own_redis

LEASE_S = 0.6


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with own_redis(tmp_path / "redis") as started:
        yield started


@contextlib.asynccontextmanager
async def serving(server: RedisServer, tmp_path: Path, keys: Keys, concurrency: int = 1) -> AsyncIterator[Worker]:
    worker = Worker(server.url, concurrency=concurrency, name="w1", keys=keys,
                    settings=WorkerSettings(lease=LEASE_S), root=tmp_path / "tasks")  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield worker
        assert not task.done(), f"the worker stopped by itself: {task.exception() if task.done() else ''}"
    finally:
        stop.set()
        await task


def request(keys: Keys, run: str, coordinator: str, command: str) -> RunRequest:
    return RunRequest(run=run, reply=keys.results(coordinator), coordinator=coordinator, workflow="wf", task=run,
                      command=command)  # fmt: skip


async def ended(client: aioredis.Redis, keys: Keys, coordinator: str, run: str) -> Reply | None:
    for _entry, fields in cast(list[tuple[str, dict[str, str]]], await client.xrange(keys.results(coordinator))):
        reply = Reply.decode(fields)
        if reply is not None and reply.run == run and reply.kind in ("ended", "failed"):
            return reply
    return None


async def test_a_paused_command_whose_coordinator_dies_gives_its_slot_back(server: RedisServer, tmp_path: Path) -> None:
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:6]}")
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        for coordinator in ("dies", "lives"):
            await client.set(keys.alive(coordinator), "1", px=600_000)
        await client.set(keys.control("held"), "pause")  # paused before any worker took it
        async with serving(server, tmp_path, keys, concurrency=1) as worker:
            await client.xadd(keys.tasks, request(keys, "held", "dies", "echo never").encode())  # type: ignore[arg-type]
            await until(lambda: any(job.request.run == "held" for job, _ in worker.jobs.values()), "taken and held")
            await client.delete(keys.alive("dies"))  # its coordinator is gone
            await client.xadd(keys.tasks, request(keys, "next", "lives", "echo next").encode())  # type: ignore[arg-type]
            reply = await until(lambda: ended(client, keys, "lives", "next"), "the next command run in the freed slot")
            assert reply.kind == "ended" and reply.data["exit_code"] == 0
            assert not worker.jobs
    finally:
        await client.aclose()


async def test_a_worker_serves_on_when_the_tasks_stream_is_deleted_under_it(
    server: RedisServer, tmp_path: Path
) -> None:
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:6]}")
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await client.set(keys.alive("c"), "1", px=600_000)
        async with serving(server, tmp_path, keys, concurrency=2) as worker:
            await client.xadd(keys.tasks, request(keys, "long", "c", "sleep 600").encode())  # type: ignore[arg-type]
            await until(lambda: worker.jobs, "the long command taken")
            await client.delete(keys.tasks)  # Redis lost its data: the stream and its group are gone
            await until(lambda: not worker.jobs, "the command of the lost entry stopped")
            await until(lambda: client.exists(keys.tasks), "the stream and group made again")
            await client.xadd(keys.tasks, request(keys, "after", "c", "echo after").encode())  # type: ignore[arg-type]
            reply = await until(lambda: ended(client, keys, "c", "after"), "a command taken after the loss")
            assert reply.kind == "ended" and reply.data["exit_code"] == 0
    finally:
        await client.aclose()


async def test_dead_workers_are_forgotten_by_the_group_but_not_while_they_hold_entries(
    server: RedisServer, tmp_path: Path
) -> None:
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:6]}")
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await client.xgroup_create(keys.tasks, keys.group, id="0", mkstream=True)
        await client.xgroup_createconsumer(keys.tasks, keys.group, "gone:1")  # died with nothing left: forgotten
        await client.xadd(keys.tasks, {"m": "not a run request"})
        # Holding an entry (not a command: a worker that takes it over drops it) until its lease runs out.
        await client.xreadgroup(keys.group, "gone:2", {keys.tasks: ">"}, count=1)
        async with serving(server, tmp_path, keys):

            async def names() -> set[str]:
                return {c["name"] for c in await client.xinfo_consumers(keys.tasks, keys.group)}

            limit = LEASE_S * FORGET_AFTER_LEASES * 10 + 30
            await until(lambda: names_without(names, "gone:1"), "gone:1 forgotten", limit_s=limit)
            # gone:2's entry was taken over (and dropped) once its lease ran out; then it holds none and goes too.
            await until(lambda: names_without(names, "gone:2"), "gone:2 forgotten once it held nothing", limit_s=limit)
            assert await client.xpending(keys.tasks, keys.group) == {"pending": 0, "min": None, "max": None,
                                                                     "consumers": []}  # fmt: skip
    finally:
        await client.aclose()


async def names_without(names: object, name: str) -> bool:
    return name not in await names()  # type: ignore[operator]


async def test_output_nobody_reads_is_held_back_within_bounds_and_a_stop_then_prints_no_traceback(
    server: RedisServer, tmp_path: Path
) -> None:
    keys = Keys()  # the command line's own names
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    env |= {"AGENTDECK_WORKER_DIR": str(tmp_path / "tasks"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    env |= {"AGENTDECK_WORKER_REPLY_BYTES": str(2 << 20)}  # 2 MiB: 2,000 replies of these commands are ~40 MiB
    try:
        await client.set(keys.alive("slow"), "1", px=600_000)  # a coordinator that never reads its replies
        flood = "yes 'a line of output that nobody reads, printed without end' | head -c 2000000000"
        for n in range(4):  # more than one command held back at once
            await client.xadd(keys.tasks, request(keys, f"flood{n}", "slow", flood).encode())  # type: ignore[arg-type]
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: ASYNC220 - started once; its end is awaited in a thread
                [AGENTDECK, "worker", "--redis", server.url, "--concurrency", "4"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            sizes: list[int] = []

            async def held_back() -> bool:  # the stream stopped growing: every command's output waits in its pipe
                sizes.append(int(await client.memory_usage(keys.results("slow"), samples=0) or 0))
                return len(sizes) > 2 and sizes[-1] == sizes[-2] == sizes[-3] and sizes[-1] > 0

            await until(held_back, "the reply stream at its cap: the commands' output held back", limit_s=120,
                        pause_s=0.5)  # fmt: skip
            # 2 MiB allowed, plus what four commands send between two checks (a tenth of a second); with only the cap
            # of 2,000 replies (up to 64 KiB each) it was ~40 MiB here.
            assert sizes[-1] < 12 << 20, f"{sizes[-1] / 2**20:.1f} MiB waiting in Redis"
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        printed = log.read_text()
        assert "Traceback" not in printed and "destroyed but it is pending" not in printed, printed
        assert "SIGTERM: stopping" in printed
    finally:
        await client.aclose()


async def test_a_worker_its_redis_user_may_not_make_the_stream_exits_3_and_says_so(
    server: RedisServer, tmp_path: Path
) -> None:
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    secret = f"pw-{uuid.uuid4().hex[:8]}"
    try:  # a Redis user (ACL) that may read and write, but not make consumer groups
        await client.acl_setuser("limited", enabled=True, passwords=[f"+{secret}"], keys=["*"], channels=["*"],
                                 commands=["+@all", "-xgroup"])  # fmt: skip
    finally:
        await client.aclose()
    url = f"redis://limited:{secret}@127.0.0.1:{server.port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    env |= {"AGENTDECK_WORKER_DIR": str(tmp_path / "tasks"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = await asyncio.to_thread(
        subprocess.run, [AGENTDECK, "worker", "--redis", url], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert "refused to make the tasks stream" in result.stderr and "hint:" in result.stderr
    assert secret not in result.stderr and "Traceback" not in result.stderr
