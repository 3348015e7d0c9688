"""Event bus conformance: one suite run against ``InProcessBus`` and ``RedisBus``, plus Redis's own failure modes.

Everything is real: an embedded SurrealDB (``mem://``) holds the events subscribers refill from, and ``RedisBus``
talks to the Redis server at ``AGENTDECK_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``), each test under its
own key prefix, deleted afterwards. A new transport joins by adding itself to ``BUS_KINDS`` and ``make_bus``.

``Recorder`` stands in for the engine's ``EventRecorder``: it publishes at once and persists in batches later, so
a subscriber refilling a gap meets events that are not stored yet, as it does in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol, cast
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from db import connect
from db.models import Event
from db.stores import EventStore, Stores
from engine.bus import (
    BusUnavailable,
    EventBus,
    Flush,
    GapNotice,
    InProcessBus,
    RedisBus,
    RedisSubscription,
    Subscription,
    make_bus,
)

REDIS_URL = os.environ.get("AGENTDECK_TEST_REDIS", "redis://127.0.0.1:6379/0")
BUS_KINDS = ["inprocess", "redis"]
LIMIT_S = 60.0  # generous: only ever hit when something is broken


# -- helpers -------------------------------------------------------------------------------------------------------


def make_events(workflow: str, first: int, last: int, kind: str = "task.output") -> list[Event]:
    return [
        Event(seq=seq, type=kind, workflow=workflow, task=f"t{seq % 3}", data={"n": seq, "text": f"line {seq}"})
        for seq in range(first, last + 1)
    ]


async def read(sub: Subscription, count: int, limit_s: float = LIMIT_S) -> list[Event]:
    """The next ``count`` events of ``sub``; fails the test if they do not all come within ``limit_s``."""
    out: list[Event] = []
    async with asyncio.timeout(limit_s):
        while len(out) < count:
            out.append(await anext(sub))
    return out


def seqs(events: Sequence[Event]) -> list[int]:
    return [event.seq for event in events]


class Recorder:
    """The engine's side: publish immediately, persist in batches when flushed (``flush`` is what buses get)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.buffer: list[Event] = []
        self.flushes = 0
        self._lock = asyncio.Lock()

    async def emit(self, bus: EventBus, events: Sequence[Event]) -> None:
        self.buffer.extend(events)
        await bus.publish_many(events)

    async def flush(self) -> None:
        async with self._lock:
            self.flushes += 1
            while self.buffer:
                batch = self.buffer[:500]
                await self.store.append_many(batch)
                del self.buffer[: len(batch)]


class LaggingStore(EventStore):
    """An ``EventStore`` whose writes become visible only after ``lag`` more reads (a batch landing late)."""

    def __init__(self, inner: EventStore, lag: int) -> None:
        self.inner = inner
        self.lag = lag
        self.reads = 0
        self._held: list[tuple[int, list[Event]]] = []

    async def append_many(self, events: Sequence[Event]) -> None:
        self._held.append((self.reads + self.lag, list(events)))

    async def list(self, workflow_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        self.reads += 1
        due = [batch for visible_at, batch in self._held if visible_at <= self.reads]
        self._held = [(visible_at, batch) for visible_at, batch in self._held if visible_at > self.reads]
        for batch in due:
            await self.inner.append_many(batch)
        return await self.inner.list(workflow_id, after_seq, limit)

    async def last_seq(self, workflow_id: str) -> int:
        return await self.inner.last_seq(workflow_id)


class BusFactory(Protocol):
    def __call__(
        self,
        *,
        store: EventStore | None = ...,
        flush: Flush | None = ...,
        queue_size: int = ...,
        refill_timeout: float = ...,
    ) -> EventBus: ...


def running_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with connect("mem://") as db:
        yield Stores.over(db).events


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key/channel prefix of this test's own on the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except (OSError, RedisConnectionError) as exc:
        client.close()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    prefix = f"agentdeck-test-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=BUS_KINDS)
async def new_bus(request: pytest.FixtureRequest, store: EventStore) -> AsyncIterator[BusFactory]:
    """Builds buses of one kind over the test's store (defaults overridable); closes them after the test."""
    kind = str(request.param)
    prefix = request.getfixturevalue("redis_prefix") if kind == "redis" else ""
    buses: list[EventBus] = []

    def factory(
        *,
        store: EventStore | None = store,
        flush: Flush | None = None,
        queue_size: int = 1000,
        refill_timeout: float = 5.0,
    ) -> EventBus:
        bus: EventBus
        if kind == "redis":
            bus = RedisBus(REDIS_URL, store, flush, prefix=prefix, queue_size=queue_size, refill_timeout=refill_timeout)
        else:
            bus = InProcessBus(store, flush, queue_size=queue_size, refill_timeout=refill_timeout)
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        await bus.close()


# -- the conformance suite -----------------------------------------------------------------------------------------


async def test_events_arrive_whole_and_in_publish_order(new_bus: BusFactory) -> None:
    bus = new_bus()
    sent = make_events("wf-a", 1, 300)
    sent[0] = sent[0].model_copy(
        update={"agent": "builder", "data": {"nested": {"list": [1, 2.5, None, "x"], "ok": True}}}
    )
    async with bus.subscribe("wf-a") as sub:
        await bus.publish(sent[0])
        await bus.publish_many(sent[1:150])
        for event in sent[150:]:
            await bus.publish(event)
        got = await read(sub, 300)
    assert got == sent, "events must arrive in order with every field intact (ts, task, agent, data)"
    assert got[0].ts.tzinfo is not None
    assert (sub.dropped, sub.refilled, sub.duplicates) == (0, 0, 0)


async def test_a_workflow_subscription_sees_only_that_workflow(new_bus: BusFactory) -> None:
    bus = new_bus()
    async with bus.subscribe("wf-a") as sub:
        for seq in range(1, 51):
            await bus.publish_many([*make_events("wf-b", seq, seq), *make_events("wf-a", seq, seq)])
        await bus.publish_many(make_events("wf-b", 51, 60))
        await bus.publish_many(make_events("wf-a", 51, 51))
        got = await read(sub, 51)
    assert {event.workflow for event in got} == {"wf-a"}
    assert seqs(got) == list(range(1, 52)), "wf-b's trailing events must not show up before wf-a's 51"


async def test_an_all_workflows_subscription_sees_every_workflow_in_order(new_bus: BusFactory) -> None:
    bus = new_bus()
    sent = [
        event
        for seq in range(1, 41)
        for event in (*make_events("wf-a", seq, seq), *make_events("wf-b", seq, seq), *make_events("wf-c", seq, seq))
    ]
    async with bus.subscribe() as sub:
        await bus.publish_many(sent[:60])
        for event in sent[60:]:
            await bus.publish(event)
        got = await read(sub, len(sent))
    assert [(e.workflow, e.seq) for e in got] == [(e.workflow, e.seq) for e in sent]


async def test_every_subscriber_gets_everything(new_bus: BusFactory) -> None:
    bus = new_bus()
    sent = make_events("wf-a", 1, 200)
    async with bus.subscribe("wf-a") as first, bus.subscribe("wf-a") as second, bus.subscribe() as everything:
        await bus.publish_many(sent)
        results = [await read(sub, 200) for sub in (first, second, everything)]
    for got in results:
        assert seqs(got) == list(range(1, 201))


async def test_publish_nowait_delivers_at_once_or_declines(new_bus: BusFactory) -> None:
    """The recorder's fast path: a transport that needs no I/O delivers in the call; the others decline it."""
    bus = new_bus()
    first, second = make_events("wf-a", 1, 2)
    async with bus.subscribe("wf-a") as sub:
        if bus.publish_nowait(first):
            assert isinstance(bus, InProcessBus)
        else:
            await bus.publish(first)
        await bus.publish(second)
        assert seqs(await read(sub, 2)) == [1, 2], "a declined publish_nowait must not have published anything"


async def test_after_seq_replays_stored_history_then_live_with_no_gap_or_duplicate(
    new_bus: BusFactory, store: EventStore
) -> None:
    recorder = Recorder(store)
    bus = new_bus(flush=recorder.flush)
    await recorder.emit(bus, make_events("wf-a", 1, 40))
    await recorder.flush()
    # Published but not persisted yet when the subscriber joins: the replay must flush to see them.
    await recorder.emit(bus, make_events("wf-a", 41, 50))
    async with bus.subscribe("wf-a", after_seq=20) as sub:
        publisher = asyncio.create_task(recorder.emit(bus, make_events("wf-a", 51, 150)))
        got = await read(sub, 130)
        await publisher
        await recorder.emit(bus, make_events("wf-a", 151, 160))
        got += await read(sub, 10)
    assert seqs(got) == list(range(21, 161))
    assert sub.dropped == 0, "replaying history is not dropping"


async def test_after_seq_on_a_fresh_bus_replays_what_is_only_in_the_store(
    new_bus: BusFactory, store: EventStore
) -> None:
    """A dashboard attaching after a restart: this bus published nothing, the history is in the database."""
    await store.append_many(make_events("wf-a", 1, 30))
    bus = new_bus()
    async with bus.subscribe("wf-a", after_seq=0) as sub:
        history = await read(sub, 30)
        await bus.publish_many(make_events("wf-a", 31, 35))
        live = await read(sub, 5)
    assert seqs(history + live) == list(range(1, 36))


async def test_after_seq_needs_a_workflow(new_bus: BusFactory) -> None:
    with pytest.raises(ValueError, match="workflow"):
        new_bus().subscribe(after_seq=3)


async def test_a_stalled_subscriber_never_slows_publishing_and_refills_every_dropped_event(
    new_bus: BusFactory, store: EventStore
) -> None:
    recorder = Recorder(store)
    notices: list[GapNotice] = []
    bus = new_bus(flush=recorder.flush, queue_size=100)
    async with bus.subscribe("wf-a", on_notice=notices.append) as sub:
        # The subscriber reads nothing while 5,000 events go out; persisting lags behind publishing.
        async with asyncio.timeout(LIMIT_S):
            for first in range(1, 5001, 50):
                await recorder.emit(bus, make_events("wf-a", first, first + 49))
                if (first + 49) % 1000 == 0 and first < 4000:
                    await recorder.flush()  # persisted up to 4000; the last 1000 wait for a flush
        assert recorder.buffer, "the last events must still be unpersisted, so the refill has to flush"
        got = await read(sub, 5000)
    assert seqs(got) == list(range(1, 5001))
    assert sub.dropped > 0
    assert sub.refilled == sub.dropped
    assert notices, "a gap must produce a notice for the UI"
    assert list(sub.notices) == notices
    assert sum(notice.missed for notice in notices) == sub.dropped
    assert all(notice.lost == 0 for notice in notices)
    assert "refilled" in str(notices[0]) and "dropped" in str(notices[0])


async def test_a_stalled_all_workflows_subscriber_refills_a_workflow_it_never_saw_live(
    new_bus: BusFactory, store: EventStore
) -> None:
    recorder = Recorder(store)
    bus = new_bus(flush=recorder.flush, queue_size=10)
    async with bus.subscribe() as sub:
        await recorder.emit(bus, make_events("wf-a", 1, 10))  # fills the queue
        await recorder.emit(bus, make_events("wf-b", 1, 50))  # every one of these is dropped
        await recorder.emit(bus, make_events("wf-a", 11, 40))
        got = await read(sub, 90)
    assert [e.seq for e in got if e.workflow == "wf-a"] == list(range(1, 41))
    assert [e.seq for e in got if e.workflow == "wf-b"] == list(range(1, 51))
    assert sub.dropped == sub.refilled >= 50


async def test_a_live_subscriber_is_not_handed_the_history_of_a_resumed_workflow(
    new_bus: BusFactory, store: EventStore
) -> None:
    """After a restart the engine resumes a workflow at seq 31 on a bus that never saw seqs 1-30."""
    await store.append_many(make_events("wf-a", 1, 30))
    bus = new_bus()
    async with bus.subscribe("wf-a") as one, bus.subscribe() as every:
        await bus.publish_many(make_events("wf-a", 31, 35))
        for sub in (one, every):
            assert seqs(await read(sub, 5)) == [31, 32, 33, 34, 35]
            assert sub.dropped == 0


async def test_a_gap_in_the_live_stream_is_refilled_by_seq(new_bus: BusFactory, store: EventStore) -> None:
    bus = new_bus()
    await store.append_many(make_events("wf-a", 1, 10))
    async with bus.subscribe("wf-a") as sub:
        await bus.publish_many(make_events("wf-a", 1, 3))
        await bus.publish_many(make_events("wf-a", 8, 10))  # 4-7 were lost on the way
        got = await read(sub, 10)
    assert seqs(got) == list(range(1, 11))
    assert (sub.dropped, sub.refilled) == (4, 4)
    assert [(n.first_seq, n.last_seq, n.missed, n.refilled) for n in sub.notices] == [(4, 7, 4, 4)]


async def test_a_refill_retries_until_late_events_are_stored(new_bus: BusFactory, store: EventStore) -> None:
    """No flush to call (another process publishes): the subscriber keeps re-reading until the batch lands."""
    lagging = LaggingStore(store, lag=3)
    bus = new_bus(store=lagging)
    async with bus.subscribe("wf-a") as sub:
        await lagging.append_many(make_events("wf-a", 1, 10))
        await bus.publish_many(make_events("wf-a", 1, 2))
        await bus.publish_many(make_events("wf-a", 10, 10))
        got = await read(sub, 10)
    assert seqs(got) == list(range(1, 11))
    assert (sub.dropped, sub.refilled) == (7, 7)
    assert lagging.reads >= 3, "the refill must have read the store again after finding the events missing"


async def test_a_refill_gives_up_on_events_never_stored_and_keeps_going(new_bus: BusFactory, store: EventStore) -> None:
    bus = new_bus(refill_timeout=0.3)
    await store.append_many(make_events("wf-a", 4, 4))  # 5 and 6 never reach the store
    async with bus.subscribe("wf-a") as sub:
        await bus.publish_many(make_events("wf-a", 1, 3))
        await bus.publish_many(make_events("wf-a", 7, 7))
        got = await read(sub, 5)
        await bus.publish_many(make_events("wf-a", 8, 8))
        got += await read(sub, 1)
    assert seqs(got) == [1, 2, 3, 4, 7, 8]
    assert (sub.dropped, sub.refilled) == (3, 1)
    (notice,) = sub.notices
    assert notice.lost == 2
    assert "2 lost" in str(notice)


async def test_events_seen_before_are_skipped(new_bus: BusFactory) -> None:
    bus = new_bus()
    async with bus.subscribe("wf-a") as sub:
        for seq in (1, 2, 2, 3, 1, 4):
            await bus.publish_many(make_events("wf-a", seq, seq))
        got = await read(sub, 4)
    assert seqs(got) == [1, 2, 3, 4]
    assert sub.duplicates == 2
    assert sub.dropped == 0


async def test_closing_a_subscription_ends_it_and_stops_its_background_work(new_bus: BusFactory) -> None:
    before = running_tasks()
    bus = new_bus()
    sub = bus.subscribe("wf-a")
    await sub.wait_ready()
    await bus.publish_many(make_events("wf-a", 1, 5))
    assert seqs(await read(sub, 5)) == [1, 2, 3, 4, 5]
    waiting = asyncio.create_task(anext(sub))  # blocked: nothing more is published
    await asyncio.sleep(0)  # let it start waiting before the close
    await sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, LIMIT_S)
    await bus.publish_many(make_events("wf-a", 6, 6))  # publishing past a closed subscriber is fine
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    leftover = running_tasks() - before - {asyncio.current_task()}
    assert not leftover, f"the subscription left tasks running: {leftover}"


async def test_a_subscription_closed_the_moment_it_is_live_still_stops(new_bus: BusFactory) -> None:
    """Closing races whatever the subscription does on going live (Redis: asking for its sync point)."""
    before = running_tasks()
    async with asyncio.timeout(LIMIT_S):
        for turns in range(60):
            bus = new_bus()  # a fresh bus each time: its first command races the close too
            async with bus.subscribe("wf-a"):
                for _ in range(turns):  # sweep the close across the transport's await points
                    await asyncio.sleep(0)
            await bus.close()
    leftover = running_tasks() - before - {asyncio.current_task()}
    assert not leftover, f"closed subscriptions left tasks running: {leftover}"


async def test_closing_the_bus_ends_its_subscriptions(new_bus: BusFactory) -> None:
    before = running_tasks()
    bus = new_bus()
    async with bus.subscribe() as sub:
        await bus.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(sub), LIMIT_S)
    leftover = running_tasks() - before - {asyncio.current_task()}
    assert not leftover, f"the bus left tasks running: {leftover}"


# -- the factory ---------------------------------------------------------------------------------------------------


async def test_make_bus_picks_redis_only_when_configured(store: EventStore) -> None:
    embedded = make_bus(None, store)
    configured = make_bus("redis://127.0.0.1:1/0", store)
    try:
        assert isinstance(embedded, InProcessBus)
        assert isinstance(configured, RedisBus)
        assert configured.store is store
    finally:
        await embedded.close()
        await configured.close()


# -- Redis: what pub/sub loses, and what happens when Redis is not there -------------------------------------------


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_raises_bus_unavailable_with_a_hint(store: EventStore) -> None:
    url = f"redis://127.0.0.1:{_unused_port()}/0"
    bus = RedisBus(url, store, connect_timeout=2.0)
    try:
        with pytest.raises(BusUnavailable) as ping_error:
            await bus.ping()
        assert ping_error.value.hint
        with pytest.raises(BusUnavailable):
            await bus.publish(make_events("wf-a", 1, 1)[0])
        with pytest.raises(BusUnavailable):
            async with bus.subscribe("wf-a"):
                pass
    finally:
        await bus.close()
    with pytest.raises(BusUnavailable):
        async with make_bus(url, store):
            pass


class GatedProxy:
    """A TCP relay to Redis that can hold new connections at a gate.

    A subscriber whose connection was killed cannot get back in until the test opens the gate: a network
    partition, made deterministic, so the test knows events were published while the subscriber was away.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._path = parts.path
        self._open = asyncio.Event()
        self._open.set()
        self.held = asyncio.Event()  # a connection is waiting at the closed gate
        self._tasks: set[asyncio.Task[object]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self._path}"

    def close_gate(self) -> None:
        self.held.clear()
        self._open.clear()

    def open_gate(self) -> None:
        self._open.set()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if not self._open.is_set():
                self.held.set()
                await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            pipes = [
                asyncio.create_task(self._pipe(client_reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, client_writer)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                up_writer.close()
        finally:
            client_writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._open.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def kill_client(name: str, newer_than: int = 0, limit_s: float = LIMIT_S) -> int:
    """``CLIENT KILL`` the connection named ``name`` whose id is above ``newer_than``; returns the id killed.

    A connection killed a moment ago can still be listed, and a reconnecting one is not listed yet: ask for a
    newer id than the last one killed, and wait for it to appear.
    """
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with asyncio.timeout(limit_s):
            while True:
                ids = [
                    int(client["id"])
                    for client in await admin.client_list()
                    if client.get("name") == name and int(client["id"]) > newer_than
                ]
                if ids:
                    break
                await asyncio.sleep(0.01)  # polling the server's client table: there is nothing to await
        for client_id in ids:
            await admin.client_kill_filter(_id=str(client_id))
        return max(ids)
    finally:
        await admin.aclose()


@pytest.fixture
async def proxy() -> AsyncIterator[GatedProxy]:
    relay = GatedProxy(REDIS_URL)
    yield relay
    await relay.close()


async def _partitioned(proxy: GatedProxy, sub: RedisSubscription, while_away: Callable[[], Awaitable[None]]) -> None:
    """Kill ``sub``'s connection, keep it out while ``while_away`` publishes, then let it back in."""
    proxy.close_gate()
    await kill_client(sub.client_name)
    await asyncio.wait_for(proxy.held.wait(), LIMIT_S)  # it noticed, and is trying to come back
    await while_away()
    proxy.open_gate()


async def test_redis_subscriber_refills_what_it_missed_while_disconnected(
    store: EventStore, redis_prefix: str, proxy: GatedProxy
) -> None:
    recorder = Recorder(store)
    engine = RedisBus(REDIS_URL, store, recorder.flush, prefix=redis_prefix)
    dashboard = RedisBus(await proxy.start(), store, prefix=redis_prefix)  # another process: no flush to call
    try:
        async with dashboard.subscribe("wf-a") as sub:
            assert isinstance(sub, RedisSubscription)
            await recorder.emit(engine, make_events("wf-a", 1, 10))
            got = await read(sub, 10)

            async def publish_while_away() -> None:
                await recorder.emit(engine, make_events("wf-a", 11, 30))
                await recorder.flush()

            await _partitioned(proxy, sub, publish_while_away)
            # Nothing is published after the reconnect: the refill comes from the reconnect itself.
            got += await read(sub, 20)
            assert (sub.dropped, sub.refilled, sub.reconnects) == (20, 20, 1)
            await recorder.emit(engine, make_events("wf-a", 31, 35))
            got += await read(sub, 5)
        assert seqs(got) == list(range(1, 36)), "every seq exactly once, in order"
        assert sub.dropped == 20
    finally:
        await dashboard.close()
        await engine.close()


async def test_redis_all_workflows_subscriber_refills_a_workflow_that_started_while_it_was_away(
    store: EventStore, redis_prefix: str, proxy: GatedProxy
) -> None:
    recorder = Recorder(store)
    engine = RedisBus(REDIS_URL, store, prefix=redis_prefix)
    dashboard = RedisBus(await proxy.start(), store, prefix=redis_prefix)
    try:
        await recorder.emit(engine, make_events("wf-old", 1, 5))  # history: not for a live-only subscriber
        await recorder.flush()
        async with dashboard.subscribe() as sub:
            assert isinstance(sub, RedisSubscription)
            await recorder.emit(engine, make_events("wf-a", 1, 3))
            got = await read(sub, 3)

            async def publish_while_away() -> None:
                await recorder.emit(engine, make_events("wf-a", 4, 6))
                await recorder.emit(engine, make_events("wf-new", 1, 4))
                await recorder.flush()

            await _partitioned(proxy, sub, publish_while_away)
            got += await read(sub, 7)
            await recorder.emit(engine, make_events("wf-a", 7, 7))
            got += await read(sub, 1)
        by_workflow = {wf: [e.seq for e in got if e.workflow == wf] for wf in ("wf-a", "wf-new", "wf-old")}
        assert by_workflow == {"wf-a": list(range(1, 8)), "wf-new": [1, 2, 3, 4], "wf-old": []}
        assert (sub.dropped, sub.refilled) == (7, 7)
    finally:
        await dashboard.close()
        await engine.close()


async def test_redis_connection_killed_repeatedly_mid_stream_still_delivers_every_seq_once(
    store: EventStore, redis_prefix: str
) -> None:
    recorder = Recorder(store)
    engine = RedisBus(REDIS_URL, store, prefix=redis_prefix)
    dashboard = RedisBus(REDIS_URL, store, prefix=redis_prefix)
    received: list[Event] = []
    progress = asyncio.Condition()
    stop = asyncio.Event()
    published = 0
    try:
        async with dashboard.subscribe("wf-a") as sub:
            assert isinstance(sub, RedisSubscription)

            async def consume() -> None:
                async for event in sub:
                    received.append(event)
                    async with progress:
                        progress.notify_all()

            async def produce() -> None:
                nonlocal published
                while not stop.is_set() and published < 200_000:
                    await recorder.emit(engine, make_events("wf-a", published + 1, published + 10))
                    published += 10
                    if published % 100 == 0:
                        await recorder.flush()

            async def until_received_beyond(seq: int) -> None:
                async with progress:
                    await asyncio.wait_for(
                        progress.wait_for(lambda: bool(received) and received[-1].seq > seq), LIMIT_S
                    )

            consumer = asyncio.create_task(consume())
            producer = asyncio.create_task(produce())
            killed_id, published_at_kill = 0, 0
            for _ in range(3):
                # An event published after the last kill has arrived, so the subscriber is back: kill it again.
                await until_received_beyond(published_at_kill + 100)
                killed_id = await kill_client(sub.client_name, newer_than=killed_id)
                published_at_kill = published
            await until_received_beyond(published_at_kill + 100)
            stop.set()
            await asyncio.wait_for(producer, LIMIT_S)
            await recorder.flush()
            await until_received_beyond(published - 1)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        assert seqs(received) == list(range(1, published + 1)), "every seq exactly once, in order"
        assert sub.reconnects == 3
        assert sub.refilled == sub.dropped
    finally:
        stop.set()
        await dashboard.close()
        await engine.close()


async def test_redis_subscription_close_releases_its_connection(store: EventStore, redis_prefix: str) -> None:
    bus = RedisBus(REDIS_URL, store, prefix=redis_prefix)
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with bus.subscribe("wf-a") as sub:
            assert isinstance(sub, RedisSubscription)
            names = {client.get("name") for client in await admin.client_list()}
            assert sub.client_name in names
        async with asyncio.timeout(LIMIT_S):
            while True:
                if sub.client_name not in {client.get("name") for client in await admin.client_list()}:
                    break
                await asyncio.sleep(0.02)  # the server drops the connection a moment after we close it
    finally:
        await admin.aclose()
        await bus.close()


async def test_redis_events_are_json_in_the_documented_wire_form(store: EventStore, redis_prefix: str) -> None:
    """Other tools may listen on the channel: it carries ``Event.to_json_dict()``, one JSON object per message."""
    bus = RedisBus(REDIS_URL, store, prefix=redis_prefix)
    listener = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(bus.channel("wf-a"))
        event = Event(seq=1, type="task.started", workflow="wf-a", task="build", ts=datetime(2026, 1, 2, tzinfo=UTC))
        await bus.publish(event)
        async with asyncio.timeout(LIMIT_S):
            message = None
            while message is None:
                message = await pubsub.get_message(timeout=1.0)
        assert message["channel"] == f"{redis_prefix}:events:wf-a"
        assert json.loads(message["data"]) == event.to_json_dict()
    finally:
        await cast(Callable[[], Awaitable[None]], pubsub.aclose)()  # unannotated in redis-py
        await listener.aclose()
        await bus.close()
