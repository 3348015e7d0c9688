"""The Redis bus's sending side: batched, ordered, never blocking the engine, and riding out Redis outages.

``RedisBus.publish_many`` encodes the events and queues them here. What is queued goes out oldest first, one
sender at a time, as one Lua call per up to ``_CALL_EVENTS`` events. A caller that finds no send in flight sends
its batch itself, inline, and waits for that one round trip — at most ``_WAIT_S``; so in the usual case "publish
returned" means "in Redis", with no task per batch. Batches that arrive while a send is in flight are queued and go
out together in the next call, from a background task that ends when nothing is left. If Redis is slow (an inline
send ran out of time) callers stop waiting at all until a call gets through again, so a slow or frozen Redis
never holds up the engine's group commit. Each workflow's events reach Redis in the order they were published.

The events are stored before they are published, so anything that does not reach subscribers live can be
refilled from the ``EventStore`` by seq. What the sender owes subscribers is to say *what* they may have missed:

- each call raises the per-workflow high-water marks (``{prefix}:last_seq``) atomically with its ``PUBLISH``es, so
  a subscription that (re)syncs learns what was published before it (see ``redis_bus``);
- when events are dropped — Redis unreachable, or more than ``_MAX_PENDING`` queued because Redis is slower than
  the event rate — it records their marks, and publishes a *marks notice* on ``{prefix}:marks`` once it can: the
  subscriptions take it as a sync point and refill whatever they have not seen up to those marks. After an outage
  the notice carries every mark this bus ever published (a restarted Redis lost them, and events sent just before
  it went away may not have reached anyone), and the same call restores them in the hash.

Outages are a state, not an error per publish: ``_Health`` logs one warning when Redis becomes unreachable and one
info line when it is back, whichever connection (this sender or a subscription) notices first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from db.models import Event
from engine.bus.redis_url import describe
from engine.bus.redis_url import redact as redact_url

log = logging.getLogger("engine.bus.redis_bus")  # the bus's own logger: one place to filter or raise

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_CALL_EVENTS = 1000  # events per Lua call: a group commit's batch, or several queued ones
_CALL_BYTES = 4 << 20  # ... and at most this much payload, so one call never hogs Redis for long
_WAIT_S = 0.1  # the longest a caller waits for its own batch's round trip (a loaded loop can take tens of ms)
_MAX_PENDING = 20_000  # events queued while Redis lags (~10 s at 2,000/s); beyond that the oldest are dropped
_PROBE_FIRST_S = 0.05
_PROBE_MAX_S = 1.0

# KEYS[1]: the marks hash. ARGV[1]: event channel prefix; ARGV[2]: the marks channel; ARGV[3]: a marks notice to
# publish after the events, or ''; ARGV[4]: n; then n (workflow, seq) marks; then (workflow, payload) pairs.
# Returns 1 when the marks hash did not exist (a fresh or restarted Redis), else 0.
_PUBLISH_LUA = """
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local first_event = 5 + 2 * tonumber(ARGV[4])
for i = 5, first_event - 1, 2 do
  local seq = tonumber(ARGV[i + 1])
  local mark = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if seq > mark then redis.call('HSET', KEYS[1], ARGV[i], seq) end
end
for i = first_event, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[1] .. ARGV[i], ARGV[i + 1])
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return fresh and 1 or 0
"""


class Health:
    """Whether this bus can reach Redis, as last seen; logs one line per change.

    ``up`` is None until something first reaches Redis: before that a failure is the caller's to report
    (``BusUnavailable``, exit code 3), not an outage.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.up: bool | None = None
        self.changed = asyncio.Event()  # set on every change; the sender's probe wakes on it

    def ok(self) -> None:
        if self.up is False:
            log.info("redis reachable again at %s; live events resumed", redact_url(self.url))
        if self.up is not True:
            self.up = True
            self.changed.set()

    def failed(self, exc: BaseException) -> None:
        if self.up is True:
            log.warning(
                "redis unreachable at %s: %s; events are still stored, subscribers will refill",
                redact_url(self.url),
                describe(exc, self.url),
            )
            self.up = False
            self.changed.set()


class Publisher:
    """Queues encoded events and sends them, one call at a time, in order; see the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        health: Health,
        *,
        marks_key: str,
        channel_prefix: str,
        marks_channel: str,
        command_timeout: float,
    ) -> None:
        self._client = client
        self._health = health
        self._marks_key = marks_key
        self._channel_prefix = channel_prefix
        self._marks_channel = marks_channel
        self._command_timeout = command_timeout
        self._script = client.register_script(_PUBLISH_LUA)
        self._pending: deque[tuple[str, int, str]] = deque()  # (workflow, seq, payload), oldest first
        self._marks: dict[str, int] = {}  # the highest seq handed to us per workflow, sent or dropped
        self._dropped: dict[str, int] = {}  # marks of dropped events, for the next notice
        self._down = False  # Redis is unreachable: drop instead of queueing, until a probe gets through
        self._restore = False  # owe Redis every mark, and subscribers a notice of them
        self._sent_any = False
        self._idle = asyncio.Event()  # nothing queued and no call in flight
        self._idle.set()
        self._task: asyncio.Task[None] | None = None  # the background sender, while it has work
        self._inline = False  # a caller is sending inline
        self._slow = False  # an inline send ran out of time: leave sending to the background until one succeeds
        self.dropped = 0  # events never sent live (counted for tests and the curious)

    async def publish(self, events: Sequence[Event]) -> None:
        """Queue ``events``, and send them inline when no send is in flight (waiting at most ``_WAIT_S``)."""
        if self._health.up is False and not self._down:
            # A subscription found Redis unreachable: drop (the events are stored) and let the probe find it.
            self._down = self._restore = True
            self._drop_pending()
        self.submit(events)
        if not self._pending or self._inline or self._running():
            self._continue()
            return  # dropped (Redis away), or a sender is at it and takes these next: never wait behind it
        if self._slow or self._restore:
            self._continue()
            return
        self._inline = True
        try:
            async with asyncio.timeout(_WAIT_S):
                await self._send_next()
        except TimeoutError:
            self._slow = True
        finally:
            self._inline = False
            self._continue()

    def submit(self, events: Sequence[Event]) -> None:
        """Queue events for sending (or drop them, noting their marks, while Redis is unreachable)."""
        for event in events:
            workflow, seq = event.workflow, event.seq
            if seq > self._marks.get(workflow, 0):
                self._marks[workflow] = seq
            if self._down:
                self._drop(workflow, seq)
                continue
            # default=str: a stray datetime in ``data`` must not stop the engine's event stream.
            payload = json.dumps(event.to_json_dict(), separators=(",", ":"), default=str)
            self._pending.append((workflow, seq, payload))
        while len(self._pending) > _MAX_PENDING:  # Redis is slower than the event rate: shed the oldest
            workflow, seq, _ = self._pending.popleft()
            self._drop(workflow, seq)
        if self._pending:
            self._idle.clear()

    def _continue(self) -> None:
        """After a send: hand what is left to the background sender, or note that everything went out."""
        if self._inline:
            return  # the caller sending inline continues when it is done
        if self._pending or self._dropped or self._restore:
            if not self._running():
                self._task = asyncio.create_task(self._run(), name="agentdeck-redis-publisher")
        elif not self._running():
            self._idle.set()

    async def wait_sent(self) -> None:
        """Return once everything submitted so far has been sent to Redis, or dropped."""
        await self._idle.wait()

    async def close(self, drain_s: float) -> None:
        """Send what is queued (for up to ``drain_s``, if Redis answers), then stop the sender."""
        if not self._down:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._idle.wait()
        task = self._task
        if task is None:
            return
        # Cancel until it stops: redis-py can swallow a cancellation (Python 3.11's wait_for).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if not task.cancelled() and task.exception() is not None:
            log.error("the Redis event publisher failed", exc_info=task.exception())
        self._task = None

    def _running(self) -> bool:
        task = self._task
        if task is not None and task.done():  # it only ends by returning; a crash is a bug worth a traceback
            if not task.cancelled() and task.exception() is not None:
                log.error("the Redis event publisher failed", exc_info=task.exception())
            self._task = task = None
        return task is not None

    def _drop(self, workflow: str, seq: int) -> None:
        self.dropped += 1
        if seq > self._dropped.get(workflow, 0):
            self._dropped[workflow] = seq

    def _drop_pending(self) -> None:
        while self._pending:
            workflow, seq, _ = self._pending.popleft()
            self._drop(workflow, seq)

    async def _run(self) -> None:
        while True:
            if self._restore:
                if not self._pending:
                    self._idle.set()
                await self._recover()
            elif self._pending or self._dropped:  # events, or just a notice of events dropped
                await self._send_next()
            else:  # done: an idle bus runs no task
                self._idle.set()
                self._task = None
                return

    async def _send_next(self) -> None:
        """One Lua call: the oldest queued events, their marks, and a notice for anything dropped before them."""
        chunk: list[tuple[str, int, str]] = []
        size = 0
        while self._pending and len(chunk) < _CALL_EVENTS and (not chunk or size < _CALL_BYTES):
            item = self._pending.popleft()
            size += len(item[2])
            chunk.append(item)
        marks: dict[str, int] = {}
        for workflow, seq, _ in chunk:
            marks[workflow] = seq  # seq order within a workflow: the last one is the highest
        notice = dict(self._dropped)
        self._dropped.clear()
        for workflow, seq in notice.items():
            marks[workflow] = max(seq, marks.get(workflow, 0))
        try:
            fresh = await self._call(marks, chunk, notice)
        except asyncio.CancelledError:
            # Cut short (an inline send ran out of time, or the bus is closing): Redis may or may not have run
            # it, so count these as dropped; the next notice covers them (duplicates are skipped downstream).
            for workflow, seq, _ in chunk:
                self._drop(workflow, seq)
            self._merge_dropped(notice)
            raise
        except Exception as exc:
            # Unreachable, or refusing (OOM, READONLY, NOAUTH): either way a state to wait out with a probe and
            # one log line, not an error per batch. The events are stored; subscribers refill them.
            for workflow, seq, _ in chunk:
                self._drop(workflow, seq)
            self._merge_dropped(notice)
            self._fail(exc)
            return
        self._health.ok()
        self._slow = False
        if fresh and self._sent_any:
            # Redis lost the marks since we last sent (restarted, and redis-py reconnected on its own):
            # restore them all and tell subscribers, who resynced against a Redis that knew nothing.
            self._restore = True
        self._sent_any = True

    def _merge_dropped(self, marks: dict[str, int]) -> None:
        for workflow, seq in marks.items():
            if seq > self._dropped.get(workflow, 0):
                self._dropped[workflow] = seq

    def _fail(self, exc: BaseException) -> None:
        self._down = self._restore = True
        self._drop_pending()
        self._health.failed(exc)

    async def _recover(self) -> None:
        """Probe until Redis answers, then restore every mark and publish them as a notice, in one call."""
        delay = _PROBE_FIRST_S
        while True:
            try:
                if self._down:  # a cheap probe first: events keep being dropped until it gets through
                    async with asyncio.timeout(self._command_timeout):
                        await self._client.ping()
                marks = dict(self._marks)
                self._dropped.clear()  # covered by ``marks``
                # Accept events again while the restore is in flight: they queue behind it, so they reach
                # subscribers after the notice that covers everything before them.
                self._down = False
                await self._call(marks, [], marks)
            except Exception as exc:  # the next restore covers every mark again
                self._down = True
                self._drop_pending()
                self._health.failed(exc)
                self._health.changed.clear()
                # Wake early if a subscription gets through first.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._health.changed.wait()
                delay = min(delay * 2, _PROBE_MAX_S)
                continue
            self._health.ok()
            self._restore = False
            self._sent_any = True
            return

    async def _call(self, marks: dict[str, int], chunk: list[tuple[str, int, str]], notice: dict[str, int]) -> bool:
        args: list[str | int] = [
            self._channel_prefix,
            self._marks_channel,
            json.dumps(notice, separators=(",", ":")) if notice else "",
            len(marks),
        ]
        for workflow, seq in marks.items():
            args += [workflow, seq]
        for workflow, _, payload in chunk:
            args += [workflow, payload]
        async with asyncio.timeout(self._command_timeout):
            fresh = await self._script(keys=[self._marks_key], args=args)
        return bool(fresh)
