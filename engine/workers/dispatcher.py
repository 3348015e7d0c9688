"""The coordinator's side of running commands on workers: put them on the tasks stream, route the replies.

One ``Dispatcher`` per engine, made on first use. It adds run requests to ``{prefix}:tasks``, reads its own
reply stream with one reader task and hands each reply to the run it is about (a bounded queue per run: a run
whose output is not stored fast enough stops the reader, and the workers then wait on the stream's length), keeps
the coordinator's ``alive`` key, and publishes controls. ``engine.workers.sandbox.WorkerSandbox`` is the
``Sandbox`` tasks see. The wire format is in ``engine.workers.protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from engine.bus._redis_publisher import CONNECTION_ERRORS
from engine.bus.redis_url import BadRedisUrl, check, describe
from engine.bus.redis_url import redact as redact_url
from engine.sandbox.base import SandboxUnavailable
from engine.workers.protocol import (
    Control,
    Keys,
    Reply,
    RunRequest,
    StreamRead,
    WorkerSettings,
    coordinator_token,
    encode_control,
)

log = logging.getLogger(__name__)

#: Replies one run may have waiting before the reader waits for that run to take them.
RUN_QUEUE = 256
_READ_COUNT = 500
_BLOCK_MS = 1000
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0
#: How long a control's record is kept for a worker that takes the entry later.
CONTROL_TTL_S = 24 * 3600


def redis_client(url: str, name: str) -> aioredis.Redis:
    """A client with the settings every Redis user here shares: no socket timeout (redis-py enforces it with
    ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation), quick retries of a blip."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        client_name=name,
        socket_connect_timeout=5.0,
        socket_timeout=None,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


class Dispatcher:
    """Runs commands on ``agentdeck worker`` processes for one engine (``owner``), over Redis at ``url``."""

    def __init__(self, url: str, owner: str, keys: Keys | None = None, settings: WorkerSettings | None = None) -> None:
        self.url = url
        self.keys = keys or Keys()
        self.settings = settings or WorkerSettings()
        self.token = coordinator_token(owner)
        self.reply_stream = self.keys.results(self.token)
        try:
            check(url)
        except BadRedisUrl as exc:
            raise SandboxUnavailable(str(exc)) from exc
        self.client = redis_client(url, f"{self.keys.prefix}:coordinator")
        self._runs: dict[str, asyncio.Queue[Reply]] = {}
        self._started: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._closed = False
        #: Per workflow taken over from another engine: that engine's commands being stopped (``fence``).
        self._fences: dict[str, asyncio.Future[None]] = {}
        #: Runs paused now: their control keys are kept alive (a pause may last longer than the key's time to live,
        #: and a worker taking such a run over must still find it paused).
        self._paused: set[str] = set()

    async def ready(self) -> None:
        """Connected, alive and reading replies (once; every run waits for it)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        started = self._started
        try:
            await asyncio.shield(started)
        except SandboxUnavailable:
            if self._started is started:
                self._started = None  # the next run tries again (Redis may be back by then)
            raise

    async def _start(self) -> None:
        try:
            await self._renew_alive()
        except CONNECTION_ERRORS as exc:
            raise SandboxUnavailable(
                f"cannot reach Redis at {redact_url(self.url)} to hand commands to workers: {describe(exc, self.url)}"
            ) from exc
        self._loops = [
            asyncio.create_task(self._read(), name="agentdeck-dispatcher-replies"),
            asyncio.create_task(self._keep_alive(), name="agentdeck-dispatcher-alive"),
        ]

    def register(self, run: str) -> asyncio.Queue[Reply]:
        queue: asyncio.Queue[Reply] = asyncio.Queue(RUN_QUEUE)
        self._runs[run] = queue
        return queue

    def unregister(self, run: str) -> None:
        self._runs.pop(run, None)
        self._paused.discard(run)

    def fence(self, workflow: str, previous_owner: str) -> None:
        """``workflow`` was taken over from the engine ``previous_owner``: its commands of it still on workers are
        stopped before any of ours is handed out (``engine.workers.fence``)."""
        if coordinator_token(previous_owner) == self.token or workflow in self._fences:
            return

        async def stop() -> None:
            from engine.workers.fence import stop_previous

            try:
                await self.ready()
                await stop_previous(self, workflow, previous_owner)
            except (SandboxUnavailable, *CONNECTION_ERRORS, RedisError) as exc:  # its commands will say what is wrong
                log.warning("workflow %s: could not stop the commands of the engine it was taken from: %s",
                            workflow, exc)  # fmt: skip
            finally:
                self._fences.pop(workflow, None)

        self._fences[workflow] = asyncio.ensure_future(stop())

    async def submit(self, request: RunRequest) -> str:
        """Add ``request`` to the tasks stream (once a fence on its workflow is done); returns its entry id."""
        fence = self._fences.get(request.workflow)
        if fence is not None:
            await asyncio.shield(fence)
        await self.ready()
        return str(await self.client.xadd(self.keys.tasks, request.encode()))  # type: ignore[arg-type]

    async def control(self, run: str, action: Control) -> None:
        """Tell the worker running ``run`` (now, and one that takes it over later) to pause, resume or kill it."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.control(run), action, ex=CONTROL_TTL_S)
            pipe.publish(self.keys.control_channel, encode_control(run, action))
            await pipe.execute()
        if action == "pause" and run in self._runs:
            self._paused.add(run)
        else:
            self._paused.discard(run)

    async def withdraw(self, entry: str) -> None:
        """Take an entry off the tasks stream: a worker that has not read it yet never will."""
        await self.client.xdel(self.keys.tasks, entry)

    async def _renew_alive(self) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.alive(self.token), "1", px=int(self.settings.lease * 2000))
            for run in self._paused:
                pipe.expire(self.keys.control(run), CONTROL_TTL_S)
            await pipe.execute()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease / 2)
            try:
                await self._renew_alive()
            except (*CONNECTION_ERRORS, RedisError) as exc:  # out of memory, read-only replica …: try again
                log.warning("cannot renew this coordinator's lease in Redis: %s", describe(exc, self.url))

    async def _read(self) -> None:
        """Every reply, in order, to its run's queue; the stream is trimmed behind what was handed over."""
        last = "0-0"
        delay = _RETRY_FIRST_S
        down = False
        while True:
            try:
                read = await self.client.xread({self.reply_stream: last}, count=_READ_COUNT, block=_BLOCK_MS)
                found = cast(StreamRead, read)  # RESP2 (redis-py's default): a list of (stream, entries)
                if down:
                    log.info("Redis is back: replies from workers flow again")
                    down = False
                delay = _RETRY_FIRST_S
            except (*CONNECTION_ERRORS, RedisError) as exc:  # any refusal too: the reader must not die
                if not down:
                    log.warning("cannot read workers' replies from Redis (retrying): %s", describe(exc, self.url))
                    down = True
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX_S, delay * 2)
                continue
            for _stream, entries in found or []:
                for entry, fields in entries:
                    last = entry
                    reply = Reply.decode(fields)
                    queue = self._runs.get(reply.run) if reply is not None else None
                    if reply is not None and queue is not None:
                        await queue.put(reply)  # waits while that run's output is not stored yet
            if found:
                with contextlib.suppress(*CONNECTION_ERRORS, RedisError):
                    await self.client.xtrim(self.reply_stream, minid=last)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for loop in [*self._loops, *self._fences.values()]:
            loop.cancel()
        await asyncio.gather(*self._loops, *self._fences.values(), return_exceptions=True)
        if self._started is not None and self._started.done() and not self._started.exception():
            with contextlib.suppress(*CONNECTION_ERRORS):
                # Gone at once: workers stop what this coordinator still had running (none outlives its engine).
                await self.client.delete(self.keys.alive(self.token), self.reply_stream)
        elif self._started is not None and not self._started.done():
            self._started.cancel()
        await self.client.aclose()
