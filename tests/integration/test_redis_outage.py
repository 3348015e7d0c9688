"""The Redis bus through a Redis outage, and when it has to drop events: the engine never notices, subscribers
refill, and the log says so once each way (never a traceback, never the password).

A real ``redis-server`` of the test's own (temp dir, free port, a password, nothing persisted) is killed and
started again on the same port; events are stored before they are published, as the engine does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from db import connect
from db.models import Event
from db.stores import EventStore, Stores
from engine.bus import BusUnavailable, RedisBus, Subscription, _redis_publisher
from tests.support.polling import until
from tests.support.redis_server import PASSWORD, RedisServer, own_redis, unused_port

MAIN_REDIS_URL = os.environ.get("AGENTDECK_TEST_REDIS", "redis://127.0.0.1:6379/0")
LIMIT_S = 60.0  # generous: only ever hit when something is broken


def make_events(workflow: str, first: int, last: int) -> list[Event]:
    return [Event(seq=seq, type="task.output", workflow=workflow, data={"n": seq}) for seq in range(first, last + 1)]


def seqs(events: Sequence[Event]) -> list[int]:
    return [event.seq for event in events]


async def read(sub: Subscription, count: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(LIMIT_S):
        while len(out) < count:
            out.append(await anext(sub))
    return out


async def emit(store: EventStore, bus: RedisBus, events: Sequence[Event]) -> None:
    """The engine's order: stored, then published."""
    await store.append_many(events)
    await bus.publish_many(events)


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with connect("mem://") as db:
        yield Stores.over(db).events


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with own_redis(tmp_path) as server:
        yield server


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key/channel prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(MAIN_REDIS_URL)
    try:
        client.ping()
    except (OSError, RedisConnectionError) as exc:
        client.close()
        pytest.skip(f"no Redis at {MAIN_REDIS_URL}: {exc}")
    prefix = f"agentdeck-test-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def _bus_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno == level and record.name.startswith("engine.bus")]


async def test_an_outage_logs_one_line_each_way_and_subscribers_refill_what_was_published_meanwhile(
    store: EventStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    redacted = f"redis://:***@127.0.0.1:{redis_server.port}/0"
    async with RedisBus(redis_server.url, store, connect_timeout=2.0) as bus, bus.subscribe("wf-a") as sub:
        await emit(store, bus, make_events("wf-a", 1, 10))
        got = await read(sub, 10)

        redis_server.kill()
        await emit(store, bus, make_events("wf-a", 11, 20))  # never raises: the engine keeps going
        await until(lambda: bus.reachable is False, limit_s=LIMIT_S, pause_s=0.005)
        for first in range(21, 61, 10):  # one group commit after another, all while Redis is away
            await emit(store, bus, make_events("wf-a", first, first + 9))
        await until(
            lambda: bus.dropped == 50, limit_s=LIMIT_S, pause_s=0.005
        )  # none of them is still on its way when Redis comes back
        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert [record.getMessage() for record in warnings] == [
            f"redis unreachable at {redacted}: {_reason(warnings[0])}; events are still stored, subscribers will refill"
        ], "one warning for the outage, not one per publish or per connection"

        await redis_server.start()
        # Nothing is published after Redis is back: the subscriber learns what it missed from the bus's marks.
        got += await read(sub, 50)
        await emit(store, bus, make_events("wf-a", 61, 65))
        got += await read(sub, 5)
        assert bus.reachable is True

    assert seqs(got) == list(range(1, 66)), "every seq exactly once, in order"
    assert (sub.dropped, sub.refilled) == (50, 50), "what was published during the outage came from the store"
    assert bus.dropped == 50
    assert seqs(await store.list("wf-a")) == list(range(1, 66)), "the engine kept storing throughout"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert [record.getMessage() for record in _bus_records(caplog, logging.INFO) if "redis" in record.getMessage()] == [
        f"redis reachable again at {redacted}; live events resumed"
    ]
    assert not [record for record in caplog.records if record.exc_info], "an outage is not a traceback"
    assert "Traceback" not in caplog.text
    assert PASSWORD not in caplog.text


def _reason(record: logging.LogRecord) -> str:
    """The ``<reason>`` part of the outage line (whatever redis-py said: refused, reset, closed)."""
    message = record.getMessage()
    start = message.index(": ") + 2
    reason = message[start : message.index("; events are still stored")]
    assert reason, "the line must say why"
    return reason


async def test_a_second_process_subscriber_refills_a_workflow_that_ended_during_the_outage(
    store: EventStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The dashboard is another process (its own bus); the workflow's last events went out while Redis was away."""
    caplog.set_level(logging.INFO)
    async with (
        RedisBus(redis_server.url, store, connect_timeout=2.0) as engine,
        RedisBus(redis_server.url, store, connect_timeout=2.0) as dashboard,
        dashboard.subscribe() as sub,
    ):
        await emit(store, engine, make_events("wf-a", 1, 5))
        got = await read(sub, 5)
        redis_server.kill()
        await emit(store, engine, make_events("wf-a", 6, 8))
        await until(lambda: engine.reachable is False, limit_s=LIMIT_S, pause_s=0.005)
        await emit(store, engine, [*make_events("wf-a", 9, 12), *make_events("wf-new", 1, 3)])
        await until(lambda: engine.dropped == 10, limit_s=LIMIT_S, pause_s=0.005)
        await redis_server.start()
        got += await read(sub, 10)
    assert [e.seq for e in got if e.workflow == "wf-a"] == list(range(1, 13))
    assert [e.seq for e in got if e.workflow == "wf-new"] == [1, 2, 3], "a workflow born during the outage too"
    assert sub.dropped == sub.refilled == 10
    # One warning per process that noticed (each bus is its own process here), and never a traceback.
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 2
    assert not [record for record in caplog.records if record.exc_info]
    assert PASSWORD not in caplog.text


async def test_a_redis_restarted_between_publishes_gets_every_mark_back(
    store: EventStore, redis_server: RedisServer
) -> None:
    """redis-py reconnects on its own, so no publish fails; the bus still notices the marks are gone."""
    async with RedisBus(redis_server.url, store, connect_timeout=2.0) as bus:
        await emit(store, bus, make_events("wf-a", 1, 5))
        await emit(store, bus, make_events("wf-b", 1, 7))
        redis_server.kill()
        await redis_server.start()
        await emit(store, bus, make_events("wf-a", 6, 6))
        await bus.wait_sent()
        admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            async with asyncio.timeout(LIMIT_S):
                while await admin.hget(bus.marks_key, "wf-b") is None:
                    await bus.wait_sent()  # the restore may still be on its way
                    await asyncio.sleep(0.005)
            assert await admin.hgetall(bus.marks_key) == {"wf-a": "6", "wf-b": "7"}
        finally:
            await admin.aclose()


async def test_events_shed_while_redis_lags_are_refilled_even_at_the_end_of_a_workflow(
    store: EventStore, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More queued than the bus keeps: the oldest are dropped, and a notice tells subscribers to refill them."""
    monkeypatch.setattr(_redis_publisher, "_MAX_PENDING", 20)
    async with (
        RedisBus(MAIN_REDIS_URL, store, prefix=redis_prefix) as bus,
        bus.subscribe("wf-a") as one,
        bus.subscribe() as every,
    ):
        await emit(store, bus, make_events("wf-a", 1, 3))
        assert seqs(await read(one, 3)) == [1, 2, 3]
        assert seqs(await read(every, 3)) == [1, 2, 3]
        # wf-a's last 7 events are the oldest of 27 queued at once: shed; nothing of wf-a follows them live.
        await emit(store, bus, [*make_events("wf-a", 4, 10), *make_events("wf-b", 1, 20)])
        assert bus.dropped == 7
        assert seqs(await read(one, 7)) == list(range(4, 11))
        rest = await read(every, 27)
    assert [e.seq for e in rest if e.workflow == "wf-a"] == list(range(4, 11))
    assert [e.seq for e in rest if e.workflow == "wf-b"] == list(range(1, 21))
    assert (one.dropped, one.refilled) == (7, 7)


async def test_a_redis_never_reached_is_an_error_whose_message_hides_the_password(store: EventStore) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{unused_port()}/0"
    async with asyncio.timeout(LIMIT_S):
        bus = RedisBus(url, store, connect_timeout=2.0)
        try:
            with pytest.raises(BusUnavailable) as error:
                await bus.publish_many(make_events("wf-a", 1, 1))
        finally:
            await bus.close()
    assert PASSWORD not in str(error.value)
    assert "redis://:***@127.0.0.1" in str(error.value)
    assert error.value.hint


@pytest.mark.parametrize(("credentials", "reason"), [("", "it requires a password"), (":wrong-pw@", "refused")])
async def test_a_redis_that_wants_credentials_says_so_and_the_right_ones_work(
    store: EventStore, redis_server: RedisServer, credentials: str, reason: str
) -> None:
    bad = f"redis://{credentials}127.0.0.1:{redis_server.port}/0"
    for url, works in ((bad, False), (redis_server.url, True)):
        bus = RedisBus(url, store, connect_timeout=5.0)
        try:
            if works:
                await bus.ping()
                continue
            with pytest.raises(BusUnavailable) as error:
                await bus.ping()
        finally:
            await bus.close()
    message = str(error.value)
    assert message.startswith(f"Redis at redis://{'' if not credentials else ':***@'}127.0.0.1") and reason in message
    assert "wrong-pw" not in message and PASSWORD not in message
    assert "PASSWORD@HOST" in error.value.hint


async def test_a_frozen_redis_never_holds_up_publishing(store: EventStore, redis_server: RedisServer) -> None:
    """Redis stops answering (SIGSTOP) without closing anything: publishing returns regardless, and what queued
    meanwhile goes out, in order, once it answers again."""
    assert redis_server.process is not None
    async with RedisBus(redis_server.url, store, connect_timeout=2.0) as bus, bus.subscribe("wf-a") as sub:
        await emit(store, bus, make_events("wf-a", 1, 5))
        got = await read(sub, 5)
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            # Generous: a publish that waited for Redis would take its 10 s command timeout, 20 times over.
            async with asyncio.timeout(5.0):
                for first in range(6, 206, 10):
                    await emit(store, bus, make_events("wf-a", first, first + 9))
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        got += await read(sub, 200)
    assert seqs(got) == list(range(1, 206)), "every seq exactly once, in order"
    # Only the batch whose send was cut short when Redis froze may have been counted dropped (and refilled).
    assert bus.dropped <= 10
    assert sub.dropped == sub.refilled
