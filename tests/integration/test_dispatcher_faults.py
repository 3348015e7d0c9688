"""The coordinator's side of workers when Redis refuses commands rather than going away: its keep-alive and its reply
reader ride it out (before, an error other than a lost connection ended them for good, and workers then killed
every command of that engine once its ``alive`` key lapsed).

Real parts: a ``redis-server`` of the test's own, put out of memory with ``maxmemory`` (it then refuses writes with
``OOM command not allowed``, as a full production Redis with ``noeviction`` does).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.workers.dispatcher import Dispatcher
from engine.workers.protocol import Keys, WorkerSettings
from tests.support.polling import until
from tests.support.redis_server import RedisServer, own_redis

LEASE_S = 0.5  # renewed every quarter second here: a few renewals fail while Redis is full


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with own_redis(tmp_path / "redis") as started:
        yield started


async def test_the_keep_alive_outlasts_a_redis_out_of_memory(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(prefix="oom")
    dispatcher = Dispatcher(server.url, "coordinator-a", keys=keys, settings=WorkerSettings(lease=LEASE_S))
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    alive = keys.alive(dispatcher.token)
    try:
        await dispatcher.ready()
        assert await admin.exists(alive)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")  # every write is refused from now on
        await admin.delete(alive)  # deletes are still allowed: the key is gone, as if it had lapsed
        with caplog.at_level(logging.WARNING, logger="engine.workers.dispatcher"):
            await until(lambda: "maxmemory" in caplog.text, "a renewal refused for want of memory")
        await admin.config_set("maxmemory", "0")
        await until(lambda: admin.exists(alive), "the alive key renewed once Redis has memory again", limit_s=30)
        assert all(not loop.done() for loop in dispatcher._loops), "the keep-alive and the reply reader still run"
    finally:
        await admin.config_set("maxmemory", "0")
        await dispatcher.close()
        await admin.aclose()


async def test_a_pause_is_kept_for_as_long_as_it_lasts(server: RedisServer) -> None:
    """A control key lives a day; a run paused longer must still be found paused by a worker that takes it over."""
    keys = Keys(prefix="pause")
    dispatcher = Dispatcher(server.url, "coordinator-b", keys=keys, settings=WorkerSettings(lease=LEASE_S))
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await dispatcher.ready()
        dispatcher.register("wf/t/1/abc")
        await dispatcher.control("wf/t/1/abc", "pause")
        key = keys.control("wf/t/1/abc")
        await admin.expire(key, 2)  # as if the day were nearly over
        await until(lambda: ttl_above(admin, key, 3600), "the paused run's control key kept alive")
        await dispatcher.control("wf/t/1/abc", "resume")
        await admin.expire(key, 1)  # resumed: nothing keeps it any more
        await until(lambda: gone(admin, key), "the resumed run's control key left to lapse")
    finally:
        await dispatcher.close()
        await admin.aclose()


async def ttl_above(client: aioredis.Redis, key: str, seconds: int) -> bool:
    return bool(await client.ttl(key) > seconds)


async def gone(client: aioredis.Redis, key: str) -> bool:
    return not await client.exists(key)
