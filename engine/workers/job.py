"""One command on a worker: from the entry it took to the ``ended`` reply and the ``XACK``.

The command runs in a ``LocalSandbox`` (bubblewrap when installed) in the worker's directory for its task, which
persists across the task's retries on that worker. Its output is sent in the pieces the sandbox reads, and the
next piece is read only once the last one is on the coordinator's reply stream (and that stream is not too long:
a coordinator that stores output slowly slows the command down, it does not fill Redis). While it runs, the job
renews its lease and checks that its coordinator is alive; a coordinator gone kills it, a lease lost (another
worker took the entry over) kills it too. The worker acknowledges the entry only after the end is sent, so a
worker that dies mid-command leaves it for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol, cast

import redis.asyncio as aioredis

from engine.bus._redis_publisher import CONNECTION_ERRORS
from engine.sandbox import LocalSandbox, SandboxError
from engine.sandbox.base import resolve_inside
from engine.workers.protocol import REPLY_TTL_S, Control, Keys, Reply, RunRequest, WorkerSettings


class Holder(Protocol):
    """What a job needs of its worker (``engine.workers.worker.Worker``)."""

    name: str
    root: Path
    keys: Keys
    settings: WorkerSettings
    secrets: frozenset[str]
    client: aioredis.Redis

    async def finish(self, entry: str, reply_stream: str = "", reply: str = "") -> bool: ...


log = logging.getLogger(__name__)

#: Replies waiting on a coordinator's stream beyond which a command's output is held back (a reply holds one read
#: of the command's pipe, at most 64 KiB, usually far less), as are more bytes than ``WorkerSettings.reply_bytes``
#: (Redis's estimate, ``MEMORY USAGE`` on a few samples): 2,000 full reads would be 128 MiB.
REPLY_STREAM_CAP = 2_000

_CAP_CHECK_S = 0.1


def safe_name(value: str) -> str:
    """A workflow or task id as one path component."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:120] or "_"


class Job:
    """The command of one tasks-stream entry on this worker."""

    def __init__(self, worker: Holder, entry: str, request: RunRequest, reclaimed: bool) -> None:
        self.worker = worker
        self.entry = entry
        self.request = request
        self.reclaimed = reclaimed
        self.sandbox: LocalSandbox | None = None
        self.state: Control | None = None  # the last control asked for
        self.lost = False  # another worker holds the entry now
        self.finished = False  # its end is said (or it was dropped): the entry is being acknowledged
        self._pending: list[tuple[str, list[str]]] = []
        self._cap_checked = 0.0
        self._go = asyncio.Event()  # set unless paused before the command started
        self._flushes: set[asyncio.Future[None]] = set()  # output sends the sandbox waits on (``_backlog``)
        self._stopping = False  # the worker is stopping: output is no longer sent or waited for

    @property
    def client(self) -> aioredis.Redis:
        return self.worker.client

    def _reply(self, kind: str, **data: object) -> dict[str, str]:
        return Reply(run=self.request.run, kind=kind, worker=self.worker.name, data=dict(data)).encode()  # type: ignore[arg-type]

    async def send(self, kind: str, **data: object) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xadd(self.request.reply, self._reply(kind, **data))  # type: ignore[arg-type]
            pipe.expire(self.request.reply, REPLY_TTL_S)  # a coordinator that died never trims it: it goes anyway
            await pipe.execute()

    async def _finish(self, kind: str | None = None, **data: object) -> None:
        """Say how it ended (``kind``) and acknowledge the entry, in one step and only while this worker still
        holds it: a worker that lost the entry to another must neither answer for it nor acknowledge it (that
        would drop the other worker's run of it)."""
        self.finished = True
        reply = self._reply(kind, **data)["m"] if kind is not None else ""
        await self.worker.finish(self.entry, self.request.reply, reply)

    async def run(self) -> None:
        keys = self.worker.keys
        request = self.request
        if not await self.client.exists(keys.alive(request.coordinator)):
            log.info("dropping %s: its coordinator %s is gone", request.run, request.coordinator)
            await self._finish("failed", error="its coordinator's lease in Redis lapsed before a worker started it")
            return
        asked = await self.client.get(keys.control(request.run))
        if self.state is None and asked in ("pause", "resume", "kill"):  # a control that came meanwhile is newer
            self.state = cast(Control, asked)
        if self.state == "kill":
            await self._finish("ended", exit_code=None, timed_out=False, cancelled=True, duration_s=0.0)
            return
        refused = [name for name in request.secrets if name not in self.worker.secrets]
        if refused:
            await self._finish("failed", error=f"this worker does not give out {', '.join(refused)}: list the "
                               "secrets it may hand to commands in AGENTDECK_WORKER_SECRETS")  # fmt: skip
            return
        await self.send("taken", reclaimed=self.reclaimed)
        workdir = self.worker.root / safe_name(request.workflow) / safe_name(request.task)
        try:
            sandbox = self.sandbox = LocalSandbox(workdir, hidden=[self.worker.root])
            for relpath, text in request.files.items():
                target = resolve_inside(sandbox.workdir, relpath)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        except (SandboxError, ValueError, OSError) as exc:
            await self._finish("failed", error=str(exc))
            return
        if self.state == "pause":  # paused before this worker took it (a reclaim): it starts when resumed
            await self._go.wait()
            if self.lost:  # its coordinator went, or another worker took it, while it waited: not ours to end
                return
        if self._killed():  # killed while it was being set up
            await self._finish("ended", exit_code=None, timed_out=False, cancelled=True, duration_s=0.0)
            return
        secrets = {name: os.environ[name] for name in request.secrets if name in os.environ}
        started = asyncio.ensure_future(
            sandbox.run(
                request.command,
                on_lines=self._on_lines,
                env={**request.env, **secrets},
                redact=[value for value in secrets.values() if value],
                network=request.network,
                timeout=request.timeout,
                backlog=self._backlog,
            )
        )
        try:
            # One step for the sandbox's run to begin (it then says it is starting): a pause or kill that another
            # task asked for before that found nothing to act on, so it is applied again now.
            await asyncio.sleep(0)
            if self._killed():
                await sandbox.kill()
            elif self.state == "pause":
                await sandbox.pause()
            result = await asyncio.shield(started)
        except asyncio.CancelledError:  # the worker is stopping: the command goes, the entry stays for another
            # Its output is not sent any more: what it printed is for the worker that runs it again. Without this,
            # the pipe's last reads waited on a full reply stream nobody reads, and the stop hung.
            self._stopping = True
            started.cancel()
            for flush in self._flushes:
                flush.cancel()
            with contextlib.suppress(BaseException):
                await started
            for flush in self._flushes:
                flush.cancel()
            await asyncio.gather(*self._flushes, return_exceptions=True)
            await sandbox.close()
            raise
        except SandboxError as exc:
            await self._flush()
            await self._finish("failed", error=str(exc))
            return
        finally:
            self.sandbox = None
        if self.lost:
            return  # another worker runs it now; its end is the one that counts
        await self._flush()
        await self._finish("ended", **asdict(result))

    def _killed(self) -> bool:
        return self.state == "kill" or self.lost

    async def control(self, action: Control) -> None:
        """A pause, resume or kill from the coordinator."""
        self.state = action
        if action != "pause":
            self._go.set()
        sandbox = self.sandbox
        if sandbox is None:
            return
        if action == "pause":
            await sandbox.pause()
        elif action == "resume":
            await sandbox.resume()
        else:
            await sandbox.kill()

    async def lose(self) -> None:
        """The entry is no longer ours (taken over, or its coordinator is gone): stop the command, say nothing."""
        self.lost = True
        self._go.set()  # a command held back by a pause ends without starting (its slot is free again)
        if self.sandbox is not None:
            await self.sandbox.kill()

    def _on_lines(self, stream: str, lines: list[str]) -> None:
        if self._pending and self._pending[-1][0] == stream:
            self._pending[-1][1].extend(lines)
        else:
            self._pending.append((stream, list(lines)))

    def _backlog(self) -> asyncio.Future[None] | None:
        if not self._pending or self._stopping:
            return None
        flush = asyncio.ensure_future(self._flush())
        self._flushes.add(flush)
        flush.add_done_callback(self._flushes.discard)
        return flush

    async def _flush(self) -> None:
        """What was read so far onto the reply stream; holds back while that stream is over its cap, and while
        Redis cannot be reached (the command's output waits in its pipe meanwhile: nothing is dropped)."""
        delay = 0.05
        while self._pending and not self.lost and not self._stopping:
            try:
                await self._send_pending()
                return
            except CONNECTION_ERRORS as exc:
                if delay == 0.05:
                    log.warning("cannot send %s's output (retrying): %s", self.request.run, exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def _over_cap(self) -> bool:
        """Whether the coordinator's reply stream holds more than it should wait on (entries or bytes)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.request.reply)
            pipe.memory_usage(self.request.reply, samples=5)
            length, size = await pipe.execute()
        return bool(length > REPLY_STREAM_CAP or (size or 0) > self.worker.settings.reply_bytes)

    async def _send_pending(self) -> None:
        now = time.monotonic()
        if now - self._cap_checked > _CAP_CHECK_S:
            self._cap_checked = now
            delay = 0.05
            while not self.lost and not self._stopping and await self._over_cap():
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
        pending, self._pending = self._pending, []
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream, lines in pending:
                    reply = self._reply("lines", stream=stream, lines=lines)
                    pipe.xadd(self.request.reply, reply)  # type: ignore[arg-type]
                pipe.expire(self.request.reply, REPLY_TTL_S)
                await pipe.execute()
        except BaseException:
            self._pending = pending + self._pending  # not sent: first in line again, before what came meanwhile
            raise


def workdir_root(configured: str | None) -> Path:
    from db.settings import default_data_dir

    return Path(configured) if configured else default_data_dir() / "worker"


__all__ = ["Holder", "Job", "safe_name", "workdir_root"]
