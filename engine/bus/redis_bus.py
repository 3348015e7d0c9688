"""Redis pub/sub fan-out, so dashboards and workers in other processes see a workflow's events live.

Wire format: each event is JSON (``Event.to_json_dict()``) on channel ``{prefix}:events:{workflow}``; a subscriber
to every workflow pattern-subscribes ``{prefix}:events:*``.

Publishing (``_redis_publisher``): ``publish_many`` queues and returns; one sender task per bus sends each queued
batch as one Lua call that ``PUBLISH``es its events in order and, atomically with them, raises each workflow's
high-water mark in the hash ``{prefix}:last_seq``. A slow or unreachable Redis never holds up the engine: events
are stored before they are published, so what does not get through live is refilled from the ``EventStore``.

Pub/sub is fire-and-forget: a subscriber that is disconnected misses what is published meanwhile. To refill it
exactly, each time a subscription (re)subscribes it asks the server (another atomic script) to publish the
current marks to its private channel ``{prefix}:sync:{id}``. That message reaches it after every live event
published before it, so when it arrives, whatever the subscriber has not seen up to those marks was lost in the
disconnect, and it refills that from the ``EventStore`` by seq. When the *publisher* had to drop events (Redis
unreachable, or too far behind), it says so on ``{prefix}:marks`` once it can (a *marks notice*), which every
subscription takes as the same kind of sync point.

Each subscription holds its own connection, named ``{prefix}:sub:{id}`` (``CLIENT LIST`` shows it), and
reconnects with backoff until it is closed. An outage is logged once per bus when it starts and once when it
ends, not per publish or per subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from db.models import Event
from db.stores import EventStore
from engine.bus._inbox import SyncKind, SyncPoint
from engine.bus._redis_publisher import CONNECTION_ERRORS, Health, Publisher
from engine.bus.base import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REFILL_TIMEOUT_S,
    BusUnavailable,
    EventBus,
    Flush,
    NoticeCallback,
    Subscription,
)
from engine.bus.redis_url import check as check_url
from engine.bus.redis_url import redact as redact_url
from engine.bus.redis_url import unreachable as _unavailable

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = CONNECTION_ERRORS
_CLOSE_DRAIN_S = 2.0  # close() sends what is still queued for this long (the last events of a short run)
_POLL_S = 1.0  # how often a subscriber's reader wakes when idle (health checks ride on it)
_HEALTH_CHECK_S = 15  # PING an idle subscriber connection this often, so a dead peer is noticed
_RECONNECT_FIRST_S = 0.05
_RECONNECT_MAX_S = 2.0

# KEYS[1]: the marks hash. ARGV[1]: the subscriber's sync channel; ARGV[2]: its workflow, or '' for all.
_SYNC_LUA = """
local marks
if ARGV[2] == '' then
  marks = redis.call('HGETALL', KEYS[1])
else
  local seq = redis.call('HGET', KEYS[1], ARGV[2])
  marks = seq and {ARGV[2], seq} or {}
end
return redis.call('PUBLISH', ARGV[1], cjson.encode(marks))
"""


class RedisBus(EventBus):
    """Events over Redis pub/sub; gaps refilled from the ``EventStore`` by seq.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://…`` for TLS (``?ssl_ca_certs=/path/ca.pem`` names a
            private CA; see ``engine.bus.redis_url``) or ``unix://``.
        store: where subscribers refill missed events and replay history from.
        flush: the engine's "persist buffered events now" (only useful in the engine's own process).
        prefix: namespaces channels and keys, so several deployments can share one Redis.
        queue_size: events a subscriber may fall behind locally before it starts dropping (and refilling).
        refill_timeout: how long a refill waits for missing events to reach the store before giving up.
        connect_timeout: seconds to wait for Redis when connecting.

    Raises ``BadRedisUrl`` at once for a URL redis-py cannot use (the CLI exits 2), and ``BusUnavailable`` from
    ``ping``, and from ``publish*`` and a subscription's first use while Redis has never been reached (a wrong
    password or CA, Redis not started: the CLI exits 3). Once it has been reached, an outage is not an error:
    publishing drops events (they are stored; subscribers refill them) and logs one warning, and one info line
    when Redis is back.
    """

    def __init__(
        self,
        url: str,
        store: EventStore | None = None,
        flush: Flush | None = None,
        prefix: str = "agentdeck",
        queue_size: int = DEFAULT_QUEUE_SIZE,
        refill_timeout: float = DEFAULT_REFILL_TIMEOUT_S,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(store, flush, queue_size, refill_timeout)
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = max(connect_timeout, 10.0)
        self.marks_key = f"{prefix}:last_seq"
        self.channel_prefix = f"{prefix}:events:"
        self.marks_channel = f"{prefix}:marks"
        self._subs: set[RedisSubscription] = set()
        self._closed = False
        check_url(url)  # BadRedisUrl now, not a traceback at the first command
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            client_name=f"{prefix}:bus",
            socket_connect_timeout=connect_timeout,
            # No socket timeout (redis-py's default is 5 s): it enforces it on writes with asyncio.wait_for,
            # which on Python 3.11 swallows a cancellation that lands as the write completes, so a task could
            # not be stopped. Commands are bounded by asyncio.timeout here instead.
            socket_timeout=None,
            # A couple of quick retries ride out a blip; a down server fails fast enough for exit code 3.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self._sync_script = self._client.register_script(_SYNC_LUA)
        self._health = Health(url)
        self._publisher = Publisher(
            self._client,
            self._health,
            marks_key=self.marks_key,
            channel_prefix=self.channel_prefix,
            marks_channel=self.marks_channel,
            command_timeout=self.command_timeout,
        )

    def channel(self, workflow: str) -> str:
        return f"{self.channel_prefix}{workflow}"

    @property
    def reachable(self) -> bool | None:
        """Whether Redis answered the last time this bus tried; None before it first did."""
        return self._health.up

    @property
    def dropped(self) -> int:
        """Events this bus never sent live (Redis unreachable or too far behind); subscribers refill them."""
        return self._publisher.dropped

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.command_timeout):
                await self._client.ping()
        except _CONNECTION_ERRORS as exc:
            self._health.failed(exc)
            raise _unavailable(self.url, exc) from exc
        self._health.ok()

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for Redis and return at once; see the class docstring for when it raises."""
        if self._closed:
            raise RuntimeError("publish on a closed event bus")
        if self._health.up is None:
            await self.ping()  # nothing has reached Redis yet: a wrong URL is the caller's error, not an outage
        await self._publisher.publish(events)

    async def wait_sent(self) -> None:
        """Return once every event published so far has been sent to Redis (or dropped, Redis being away)."""
        await self._publisher.wait_sent()

    def subscribe(
        self, workflow: str | None = None, *, after_seq: int | None = None, on_notice: NoticeCallback | None = None
    ) -> RedisSubscription:
        if self._closed:
            raise RuntimeError("subscribe on a closed event bus")
        sub = RedisSubscription(self, workflow, after_seq, on_notice)
        self._subs.add(sub)
        return sub

    async def _request_sync(self, sync_channel: str, workflow: str | None) -> None:
        async with asyncio.timeout(self.command_timeout):
            await self._sync_script(keys=[self.marks_key], args=[sync_channel, workflow or ""])

    def _remove(self, sub: RedisSubscription) -> None:
        self._subs.discard(sub)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._publisher.close(_CLOSE_DRAIN_S)
        for sub in list(self._subs):
            await sub.close()
        await self._client.aclose()


class RedisSubscription(Subscription):
    """A subscription with its own pub/sub connection and reader task (started at once: needs a running loop).

    Attributes:
        client_name: this subscription's Redis connection name (``CLIENT LIST``, ``CLIENT KILL ID``).
        reconnects: how many times it lost its connection and subscribed again.
    """

    def __init__(
        self, bus: RedisBus, workflow: str | None, after_seq: int | None, on_notice: NoticeCallback | None
    ) -> None:
        super().__init__(
            workflow,
            after_seq,
            store=bus.store,
            flush=bus.flush,
            queue_size=bus.queue_size,
            refill_timeout=bus.refill_timeout,
            on_notice=on_notice,
        )
        self._bus = bus
        key = uuid.uuid4().hex[:12]
        self.client_name = f"{bus.prefix}:sub:{key}"
        self.reconnects = 0
        self._sync_channel = f"{bus.prefix}:sync:{key}"
        self._live = asyncio.Event()  # set once subscribed the first time (or failed for good)
        self._start_seen = False
        self._subscribed = False  # the current connection got as far as being subscribed
        self._backoff = _RECONNECT_FIRST_S
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            bus.url,
            decode_responses=True,
            client_name=self.client_name,
            socket_connect_timeout=bus.connect_timeout,
            socket_timeout=None,  # see RedisBus: reads here are bounded by get_message's own timeout
            socket_keepalive=True,
            health_check_interval=_HEALTH_CHECK_S,
            # No retries, and no errors redis-py handles itself: on any error its PubSub would otherwise
            # reconnect and resubscribe behind our back before raising. The reader below reconnects, resubscribes
            # and resyncs itself, on a fresh PubSub each time.
            retry=Retry(NoBackoff(), 0, supported_errors=()),
        )
        self._reader = asyncio.create_task(self._read(), name=f"agentdeck-bus-{self.client_name}")

    async def wait_ready(self) -> None:
        try:
            async with asyncio.timeout(self._bus.connect_timeout * 2):
                await self._live.wait()
        except TimeoutError as exc:
            raise BusUnavailable(
                f"timed out subscribing to Redis at {redact_url(self._bus.url)}", hint="is the Redis server healthy?"
            ) from exc
        await super().wait_ready()

    async def _stop_transport(self) -> None:
        self._bus._remove(self)
        # Cancel until it stops: a cancellation can still be swallowed inside redis-py (Python 3.11's wait_for),
        # and the reader also checks ``_closed`` on each turn.
        while not self._reader.done():
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=0.2)
        if not self._reader.cancelled() and self._reader.exception() is not None:
            log.error("event subscription %s reader failed", self.client_name, exc_info=self._reader.exception())
        await self._client.aclose()

    async def _read(self) -> None:
        while not self._closed:
            pubsub = self._client.pubsub()
            self._subscribed = False
            try:
                await self._listen(pubsub)
            except Exception as exc:
                if not self._live.is_set():
                    # Never got live: Redis is unreachable at first use; the consumer gets BusUnavailable.
                    self._fail(_unavailable(self._bus.url, exc))
                    self._live.set()
                    return
                self._inbox.sync(SyncPoint(SyncKind.DISCONNECTED))
                if not isinstance(exc, _CONNECTION_ERRORS):
                    log.exception("event subscription %s failed; reconnecting", self.client_name)
                elif self._subscribed:
                    # Losing one connection is not an outage (CLIENT KILL, an idle timeout): the bus logs an
                    # outage when reconnecting fails.
                    log.debug("event subscription %s lost its connection (%s); reconnecting", self.client_name, exc)
                else:
                    self._bus._health.failed(exc)
                    log.debug("event subscription %s cannot reach Redis: %s", self.client_name, exc)
            finally:
                with contextlib.suppress(Exception):
                    # redis-py leaves PubSub.aclose unannotated.
                    await cast(Callable[[], Awaitable[None]], pubsub.aclose)()
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _RECONNECT_MAX_S)

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        if self.workflow is None:
            await pubsub.psubscribe(f"{self._bus.channel_prefix}*")
        else:
            await pubsub.subscribe(self._bus.channel(self.workflow))
        await pubsub.subscribe(self._sync_channel, self._bus.marks_channel)
        unconfirmed = 3
        synced = False  # this connection's own sync point has arrived
        while not self._closed:
            message = await pubsub.get_message(timeout=_POLL_S)
            if message is None:
                continue
            kind = message["type"]
            if kind in ("subscribe", "psubscribe"):
                unconfirmed -= 1
                if unconfirmed == 0:
                    if self._live.is_set():
                        self.reconnects += 1
                    self._live.set()
                    self._subscribed = True
                    self._backoff = _RECONNECT_FIRST_S
                    self._bus._health.ok()
                    # All subscriptions are active: everything published from now on reaches us. Ask for the
                    # marks, which arrive behind every event published before them.
                    await self._bus._request_sync(self._sync_channel, self.workflow)
            elif kind == "message" and message["channel"] == self._sync_channel:
                kind_of_sync = SyncKind.RECONNECT if self._start_seen else SyncKind.START
                self._start_seen = synced = True
                self._inbox.sync(SyncPoint(kind_of_sync, _parse_marks(message["data"])))
            elif kind == "message" and message["channel"] == self._bus.marks_channel:
                # The publisher dropped events up to these marks: refill what we have not seen. Before our own
                # sync point arrives, that sync (run after the notice's marks reached the hash) covers it.
                if synced:
                    self._inbox.sync(SyncPoint(SyncKind.RECONNECT, _parse_notice(message["data"])))
            elif kind in ("message", "pmessage"):
                event = _parse_event(message["data"])
                if event is not None:
                    self._inbox.offer(event)


def _parse_event(data: Any) -> Event | None:
    try:
        return Event.model_validate_json(data)  # parsed in pydantic-core: a third cheaper than json.loads first
    except (ValueError, TypeError, ValidationError):
        log.warning("ignoring a malformed event on the bus: %.200r", data)
        return None


def _parse_marks(data: Any) -> dict[str, int]:
    """The sync script's ``cjson`` of an HGETALL-style flat list (an empty table encodes as ``{}``)."""
    flat = json.loads(data)
    if not isinstance(flat, list):
        return {}
    return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _parse_notice(data: Any) -> dict[str, int]:
    """A publisher's marks notice: a JSON object of workflow -> seq."""
    try:
        marks = json.loads(data)
        return {str(workflow): int(seq) for workflow, seq in marks.items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring a malformed marks notice on the bus: %.200r", data)
        return {}
