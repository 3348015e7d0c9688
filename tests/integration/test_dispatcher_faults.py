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
