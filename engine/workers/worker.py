"""``agentdeck worker``: take commands from the tasks stream and run them, up to ``concurrency`` at once.

The loop reads new entries with ``XREADGROUP`` (as many as it has free slots), and every half lease takes over
entries a dead worker left idle for a whole lease (``XAUTOCLAIM``). Each entry becomes a ``Job``. A heartbeat
renews the leases of the entries it holds (one Lua call: only those still its own, so it never takes back an
entry another worker took over) and stops jobs whose coordinator is gone. Controls arrive on a pub/sub channel.

Stopping the worker (SIGTERM, Ctrl-C) kills its commands and leaves their entries unacknowledged: another worker
takes them over after the lease. A Redis outage is waited out (with backoff, one log line each way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import redis.exceptions

from engine.bus._redis_publisher import CONNECTION_ERRORS
from engine.bus.base import BusUnavailable
from engine.bus.redis_url import check, describe, unreachable
from engine.bus.redis_url import redact as redact_url
from engine.workers.dispatcher import redis_client
from engine.workers.job import Job, workdir_root
from engine.workers.protocol import (
    REPLY_TTL_S,
    Control,
    Keys,
    Reply,
    RunRequest,
    StreamRead,
    WorkerSettings,
    decode_control,
)
from engine.workers.roster import Roster, WorkerInfo

log = logging.getLogger(__name__)

#: A command handed out more often than this (read, then taken over again and again) is failed, not run again.
MAX_DELIVERIES = 5

# KEYS[1]: the tasks stream. ARGV: group, consumer, entry ids. Renews (idle time 0) the ids this consumer still
# holds and returns them; an id another consumer took over is left alone.
_RENEW_LUA = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 100000, ARGV[2])
local mine = {}
for _, p in ipairs(pending) do mine[p[1]] = true end
local keep = {}
for i = 3, #ARGV do
  if mine[ARGV[i]] then table.insert(keep, ARGV[i]) end
end
if #keep > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(keep), 'JUSTID')
end
return keep
"""

# KEYS[1]: the tasks stream, KEYS[2]: the coordinator's reply stream. ARGV: group, consumer, entry, the reply to
# add ('' for none), its stream's time to live. Only while this consumer holds the entry: the reply is added and
# the entry acknowledged and deleted at once. Returns 1 if it did, 0 if another consumer holds the entry now.
_FINISH_LUA = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #held == 0 then return 0 end
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1]: the tasks stream. ARGV: group, this consumer, idle milliseconds. Deletes the other consumers that hold no
# entry and were not seen for that long — workers that died (their entries taken over) or stopped — and returns
# their names. In one step: a consumer that reads an entry meanwhile holds one, and is kept. (One deleted while it
# waits in XREADGROUP is made again by that read: nothing is lost either way.)
_FORGET_LUA = """
local gone = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(gone, f['name'])
  end
end
return gone
"""

#: Leases a consumer with no entry goes unseen before a worker deletes it from the group (``_FORGET_LUA``).
FORGET_AFTER_LEASES = 4


class Worker:
    """One worker process's loop (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 4,
        name: str | None = None,
        keys: Keys | None = None,
        settings: WorkerSettings | None = None,
        root: Path | None = None,
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.keys = keys or Keys()
        self.settings = settings or WorkerSettings()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.root = root or workdir_root(self.settings.dir)
        self.client = redis_client(url, f"{self.keys.prefix}:worker:{self.name}")
        self._renew = self.client.register_script(_RENEW_LUA)
        self._finish = self.client.register_script(_FINISH_LUA)
        self._forget = self.client.register_script(_FORGET_LUA)
        self.roster = Roster(self.client, self.keys)
        self.started = time.time()
        #: Environment variables this worker hands to commands that name them as secrets (AGENTDECK_WORKER_SECRETS).
        self.secrets = frozenset(n.strip() for n in (self.settings.secrets or "").split(",") if n.strip())
        self.jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}  # entry id -> job
        self._slot_free = asyncio.Event()
        self.taken = 0  # entries this worker has taken, new or taken over
        self._side: set[asyncio.Future[object]] = set()

    async def connect(self) -> None:
        """Reach Redis and make sure the group exists; ``BusUnavailable`` (exit 3 at the CLI) when it cannot."""
        try:
            await self.client.xgroup_create(self.keys.tasks, self.keys.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # NOPERM (an ACL), OOM …: said, not a traceback (exit 3)
                raise BusUnavailable(
                    f"Redis at {redact_url(self.url)} refused to make the tasks stream {self.keys.tasks}: "
                    f"{describe(exc, self.url)}",
                    hint="the worker's Redis user needs the stream and pub/sub commands on the agentdeck:* keys",
                ) from exc
        except CONNECTION_ERRORS as exc:
            raise unreachable(self.url, exc) from exc
        self.root.mkdir(parents=True, exist_ok=True)

    async def serve(self, stop: asyncio.Event) -> None:
        """Take and run commands until ``stop`` is set; then kill what runs (left for another worker)."""
        await self.connect()
        await self._announce()
        loops = [
            asyncio.create_task(self._listen_controls(), name="agentdeck-worker-controls"),
            asyncio.create_task(self._heartbeat(), name="agentdeck-worker-heartbeat"),
        ]
        taking = asyncio.create_task(self._take_loop(), name="agentdeck-worker-take")
        stopped = asyncio.create_task(stop.wait())
        try:
            # A loop that ends by itself failed: the worker stops (and says why) rather than run on without it.
            await asyncio.wait([taking, stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
            for loop_task in (taking, *loops):
                if loop_task.done():
                    loop_task.result()
        finally:
            for handle in (taking, stopped, *loops):
                handle.cancel()
            for _job, handle in list(self.jobs.values()):
                handle.cancel()
            await asyncio.gather(taking, stopped, *loops, *(h for _, h in self.jobs.values()), return_exceptions=True)
            with contextlib.suppress(*CONNECTION_ERRORS, redis.exceptions.ResponseError):
                await self.roster.leave(self.name)
                pending = await self.client.xpending_range(self.keys.tasks, self.keys.group, "-", "+", 1, self.name)
                if not pending:  # nothing left for others to take over: this consumer's name is not kept
                    await self.client.xgroup_delconsumer(self.keys.tasks, self.keys.group, self.name)
            await self.client.aclose()

    async def _take_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_reclaim = 0.0
        next_forget = loop.time() + self.settings.lease * FORGET_AFTER_LEASES
        cursor = "0-0"  # XAUTOCLAIM scans the pending list a page at a time: go on from where it stopped
        delay = 0.05
        down = False
        while True:
            free = self.concurrency - len(self.jobs)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                if loop.time() >= next_reclaim:
                    next_reclaim = loop.time() + self.settings.lease / 2
                    cursor, claimed, _deleted = await self.client.xautoclaim(
                        self.keys.tasks, self.keys.group, self.name, int(self.settings.lease * 1000), cursor, count=free
                    )
                    if cursor != "0-0":
                        next_reclaim = loop.time()  # more of the pending list to scan: at once
                    for entry, fields in claimed:
                        if entry in self.jobs:  # its own, claimed back after a stall: still running here
                            continue
                        if await self._delivered(entry) > MAX_DELIVERIES:
                            self._background(self._give_up(entry, fields))
                        else:
                            self._start(entry, fields, reclaimed=True)
                    if loop.time() >= next_forget:  # the group does not keep dead workers' names for good
                        next_forget = loop.time() + self.settings.lease * FORGET_AFTER_LEASES
                        idle_ms = int(self.settings.lease * FORGET_AFTER_LEASES * 1000)
                        gone = await self._forget(keys=[self.keys.tasks], args=[self.keys.group, self.name, idle_ms])
                        if gone:
                            log.info("forgot workers gone from the group: %s", ", ".join(map(str, gone)))
                    free = self.concurrency - len(self.jobs)
                    if free <= 0:
                        continue
                block = max(1, int((next_reclaim - loop.time()) * 1000))
                read = await self.client.xreadgroup(
                    self.keys.group, self.name, {self.keys.tasks: ">"}, count=free, block=block
                )
                found = cast(StreamRead, read)  # RESP2 (redis-py's default): a list of (stream, entries)
                if down:
                    log.info("Redis is back: taking commands again")
                    down = False
                delay = 0.05
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):  # the stream deleted under a read
                    raise
                log.warning("the tasks stream or its group is gone (Redis lost its data?): making them again")
                await self.connect()
                continue
            except (*CONNECTION_ERRORS, redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError) as exc:
                if not down:
                    log.warning("cannot reach Redis at %s (retrying): %s", redact_url(self.url),
                                describe(exc, self.url))  # fmt: skip
                    down = True
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            for _stream, entries in found or []:
                for entry, fields in entries:
                    self._start(entry, fields, reclaimed=False)

    async def _delivered(self, entry: str) -> int:
        """How many times the entry was handed to a worker (read, or taken over)."""
        found = await self.client.xpending_range(self.keys.tasks, self.keys.group, entry, entry, 1)
        return int(found[0]["times_delivered"]) if found else 0

    async def _give_up(self, entry: str, fields: dict[str, str] | None) -> None:
        """Every worker that ran this command stopped answering: it may be what kills them. Failed, not run again."""
        try:
            request = RunRequest.decode(fields or {})
        except ValueError:
            await self.finish(entry)
            return
        error = (f"{MAX_DELIVERIES} workers took this command and each stopped answering (it may be what brings "
                 "them down): not run again")  # fmt: skip
        reply = Reply(run=request.run, kind="failed", worker=self.name, data={"error": error}).encode()["m"]
        log.warning("giving up on %s: %s", request.run, error)
        await self.finish(entry, request.reply, reply)

    def _start(self, entry: str, fields: dict[str, str] | None, reclaimed: bool) -> None:
        if entry in self.jobs:
            return
        try:
            request = RunRequest.decode(fields or {})
        except ValueError as exc:
            log.warning("tasks stream entry %s dropped: %s", entry, exc)
            self._background(self.finish(entry))
            return
        self.taken += 1
        job = Job(self, entry, request, reclaimed)
        handle = asyncio.create_task(self._run_job(job), name=f"agentdeck-job-{request.run}")
        self.jobs[entry] = (job, handle)

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run()
        except CONNECTION_ERRORS as exc:  # the entry stays pending: this worker or another runs it again
            log.warning("lost Redis while running %s: %s", job.request.run, describe(exc, self.url))
        except Exception:
            log.exception("running %s failed", job.request.run)
        finally:
            self.jobs.pop(job.entry, None)
            self._slot_free.set()

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def finish(self, entry: str, reply_stream: str = "", reply: str = "") -> bool:
        """The entry's command ended: ``reply`` (its end) added to ``reply_stream``, the entry acknowledged and off
        the stream, atomically and only if this worker still holds it; returns whether it did."""
        keys = [self.keys.tasks, reply_stream or self.keys.tasks]
        done = await self._finish(keys=keys, args=[self.keys.group, self.name, entry, reply, REPLY_TTL_S])
        return bool(done)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        every = self.settings.lease / 3
        while True:
            due = loop.time() + every
            await asyncio.sleep(every)
            if (late := loop.time() - due) > every:  # a third of a lease: two more and another worker takes over
                log.warning("lease renewal ran %.1f s late (this worker's event loop or machine is overloaded)", late)
            with contextlib.suppress(*CONNECTION_ERRORS, redis.exceptions.ResponseError):
                await self._announce()  # the take loop logs an outage
            if not self.jobs:
                continue
            asked = list(self.jobs)
            try:
                held = set(await self._renew(keys=[self.keys.tasks], args=[self.keys.group, self.name, *asked]))
                coordinators = {job.request.coordinator for job, _ in self.jobs.values()}
                alive = {c for c in coordinators if await self.client.exists(self.keys.alive(c))}
            except CONNECTION_ERRORS:
                continue  # the take loop logs the outage
            except redis.exceptions.ResponseError as exc:  # the stream or group gone: the take loop makes them again
                log.warning("cannot renew this worker's leases: %s", exc)
                continue
            for entry in asked:
                job = self.jobs[entry][0] if entry in self.jobs else None
                if job is None or job.finished:
                    continue  # acknowledged meanwhile: not pending because it is done, not because it was taken
                if entry not in held or job.request.coordinator not in alive:
                    why = "taken over by another worker" if entry not in held else "its coordinator is gone"
                    log.info("stopping %s: %s", job.request.run, why)
                    self._background(job.lose())
                    if entry in held:  # nobody will ever read its end: said as a failure, acknowledged
                        with contextlib.suppress(*CONNECTION_ERRORS):
                            job.finished = True
                            error = "its coordinator's lease in Redis lapsed while a worker ran it"
                            await self.finish(entry, job.request.reply, job._reply("failed", error=error)["m"])

    async def _announce(self) -> None:
        """Say in the roster that this worker is here, and what it runs (``agentdeck workers`` reads it)."""
        running = [f"{job.request.workflow}/{job.request.task}" for job, _ in self.jobs.values() if not job.finished]
        info = WorkerInfo(self.name, self.concurrency, self.settings.lease, self.started, self.taken, running)
        await self.roster.announce(info)

    async def _listen_controls(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.keys.control_channel)
                    delay = 0.05
                    # What was asked while not subscribed is in the control keys: each job reads its own.
                    for job, _ in list(self.jobs.values()):
                        state = await self.client.get(self.keys.control(job.request.run))
                        if state in ("pause", "resume", "kill") and state != job.state:
                            await job.control(cast(Control, state))
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        parsed = decode_control(message["data"])
                        if parsed is None:
                            continue
                        run, action = parsed
                        for job, _ in list(self.jobs.values()):
                            if job.request.run == run:
                                self._background(job.control(action))  # a kill waits its grace: not here
            except CONNECTION_ERRORS:
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)


def check_url(url: str) -> None:
    """Refuse a Redis URL redis-py cannot use, as bad input (``BadRedisUrl``: exit 2 at the command line)."""
    check(url)
