"""``sandbox: worker``: a task's commands run on ``agentdeck worker`` processes, through the engine's ``Dispatcher``.

The task itself (its agent: the shell agent reading ``::progress::`` lines, a Python step) runs in the engine, as
with E2B; each command it runs goes to whichever worker takes it, which runs it in its own local sandbox and
streams its output back. Pause, resume and kill reach that worker. Secrets are not sent: the worker reads them
from its own environment by name and redacts them itself. Files written before a command (the shell agent's
``.agentdeck/input.json``) travel with it; the command's files stay on the worker (``read_file`` says so), and
upstream tasks' directories are not readable there (their outputs are, in ``$AGENTDECK_INPUT``).

When a worker dies, another one takes the command over after a lease and runs it again from the start: the
``on_redelivered`` callback lets the run record that (``task.retrying``), and only the new worker's output and
end count from then on. ``on_taken`` names each worker that takes a command (``task.assigned``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from engine.bus._redis_publisher import CONNECTION_ERRORS
from engine.sandbox.base import (
    LinesCallback,
    OutputBacklog,
    OutputCallback,
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxClosed,
    SandboxError,
    resolve_inside,
)
from engine.workers.dispatcher import Dispatcher
from engine.workers.protocol import Control, Reply, RunRequest

log = logging.getLogger(__name__)

#: After this long with no worker taking a command, its output says so (once).
NO_WORKER_S = 10.0
#: Beyond a lease, how long a stopped command's worker has to say it ended (its kill grace, a slow machine).
STOP_WAIT_S = 15.0


class WorkerSandbox(Sandbox):
    """Commands of one task, run by workers (see the module's docstring)."""

    remote = True

    def __init__(
        self,
        workdir: Path,
        *,
        dispatcher: Dispatcher,
        workflow: str,
        task: str,
        attempt: Callable[[], int] = lambda: 1,
        on_redelivered: Callable[[str], None] | None = None,
        on_taken: Callable[[str], None] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir  # the task's name here; its directory is on the worker
        self.dispatcher = dispatcher
        self.workflow, self.task = workflow, task
        self._attempt = attempt
        self._on_redelivered = on_redelivered
        self._on_taken = on_taken  # told the name of each worker that takes a command (the first, and any other)
        self._secrets = list(secrets)  # the task's secret names: the worker reads them from its own environment
        self._files: dict[str, str] = {}
        self._run: str | None = None
        self._paused = False
        self._ended = asyncio.Event()
        self._ended.set()
        self._closed = False
        self._queue: asyncio.Queue[Reply] | None = None
        self._entry: str | None = None
        self._taken = False  # a worker has said it runs the current command

    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the worker's sandbox applies it (paused time excluded)
        env: Mapping[str, str] | None = None,
        redact: Sequence[str] = (),
        network: bool = False,
        readable: Sequence[Path] = (),
        backlog: OutputBacklog | None = None,
        on_lines: LinesCallback | None = None,
    ) -> RunResult:
        if self._closed:
            raise SandboxClosed("sandbox is closed")
        if self._run is not None:
            raise SandboxBusy("a command is already running in this sandbox")

        def deliver(stream: str, lines: list[str]) -> None:
            if on_lines is not None:
                on_lines(stream, lines)
            elif on_output is not None:
                for line in lines:
                    on_output(stream, line)

        secret_values = {value for value in redact if value}
        given = dict(env or {})
        secrets = sorted(set(self._secrets) | {name for name, value in given.items() if value in secret_values})
        request = RunRequest(
            run=f"{self.workflow}/{self.task}/{self._attempt()}/{uuid.uuid4().hex[:12]}",
            reply=self.dispatcher.reply_stream,
            coordinator=self.dispatcher.token,
            workflow=self.workflow,
            task=self.task,
            command=command,
            env={name: value for name, value in given.items() if value not in secret_values and name not in secrets},
            secrets=secrets,
            network=network,
            timeout=timeout,
            files=self._files,
        )
        self._files = {}
        run = self._run = request.run
        self._ended.clear()
        queue = self._queue = self.dispatcher.register(run)
        self._entry = None
        self._taken = False
        loop = asyncio.get_running_loop()
        waiting = loop.call_later(NO_WORKER_S, deliver, "stderr", [
            f"agentdeck: no worker has taken this command after {NO_WORKER_S:g} s; start one with "
            "`agentdeck worker --redis URL` (it waits on the tasks stream until one does)"])  # fmt: skip
        worker: str | None = None
        entry: str | None = None
        try:
            entry = self._entry = await self.dispatcher.submit(request)
            while True:
                reply = await queue.get()
                if reply.kind == "taken":
                    self._taken = True
                    waiting.cancel()
                    if worker is not None and reply.worker != worker and self._on_redelivered is not None:
                        self._on_redelivered(f"worker {worker} stopped answering; {reply.worker} runs it again")
                    if reply.worker != worker and self._on_taken is not None:
                        self._on_taken(reply.worker)
                    worker = reply.worker
                    continue
                # An end counts from whichever worker sent it: only the worker holding the entry can send one (one
                # Lua step with the acknowledgement), be it before the command started (killed, refused) or after
                # it was given up. Output counts only from the worker that took it last.
                if reply.kind not in ("ended", "failed") and reply.worker != worker:
                    continue  # a worker that lost the command (it was taken over): what it says no longer counts
                worker = reply.worker
                if reply.kind == "lines":
                    deliver(str(reply.data.get("stream", "stdout")), list(reply.data.get("lines", [])))
                    if backlog is not None and (wait := backlog()) is not None:
                        await wait
                elif reply.kind == "ended":
                    return _result(reply)
                else:
                    raise SandboxError(f"worker {worker}: {reply.data.get('error', '?')}")
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._stop(run, entry, queue, worker))
            raise
        finally:
            waiting.cancel()
            self.dispatcher.unregister(run)
            self._run = None
            self._paused = False
            self._ended.set()

    async def _stop(self, run: str, entry: str | None, queue: asyncio.Queue[Reply], worker: str | None) -> None:
        """Cancelled: the command is killed where it runs (or never starts), and we wait for that to be said."""
        await self.dispatcher.control(run, "kill")
        if entry is not None:
            await self.dispatcher.withdraw(entry)
        while worker is None and not queue.empty():  # a worker's answer may be here already
            reply = queue.get_nowait()
            if reply.kind in ("ended", "failed"):
                return
            worker = reply.worker
        if worker is None:
            return  # nobody took it: a worker reading it now finds it killed, one reading later never sees it
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.dispatcher.settings.lease + STOP_WAIT_S):
                while True:
                    reply = await queue.get()
                    if reply.kind in ("ended", "failed"):
                        return

    async def _control(self, action: Control) -> bool:
        """Send a control to the run's worker; Redis unreachable is logged, not raised (a cancel must go on)."""
        if self._run is None:
            return False
        try:
            await self.dispatcher.control(self._run, action)
        except CONNECTION_ERRORS as exc:
            log.warning("could not %s %s on its worker: Redis unreachable (%s)", action, self._run, exc)
            return False
        return True

    async def pause(self) -> None:
        if self._run is not None and not self._paused and await self._control("pause"):
            self._paused = True

    async def resume(self) -> None:
        if self._run is not None and self._paused and await self._control("resume"):
            self._paused = False

    async def kill(self) -> None:
        if self._run is None:
            return
        await self._control("kill")
        if not self._taken and self._entry is not None and self._queue is not None:
            # Nobody has taken it: off the stream (a worker reading it now finds it killed), and it ended here.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.dispatcher.withdraw(self._entry)
            ended = {"exit_code": None, "timed_out": False, "cancelled": True, "duration_s": 0.0}
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(Reply(run=self._run, kind="ended", worker="", data=ended))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.dispatcher.settings.lease + STOP_WAIT_S):
                await self._ended.wait()

    async def write_file(self, relpath: str, data: bytes | str) -> None:
        resolve_inside(self.workdir, relpath)  # the same refusals as a local sandbox
        self._files[relpath] = data.decode("utf-8", "replace") if isinstance(data, bytes) else data

    async def read_file(self, relpath: str) -> bytes:
        resolve_inside(self.workdir, relpath)
        if relpath in self._files:
            return self._files[relpath].encode()
        raise FileNotFoundError(f"{relpath}: a command's files stay on the worker that ran it")

    def pids(self) -> list[int]:
        return []  # another machine's

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        return self._run is not None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.kill()


def _result(reply: Reply) -> RunResult:
    data = reply.data
    code = data.get("exit_code")
    return RunResult(
        exit_code=None if code is None else int(code),
        timed_out=bool(data.get("timed_out")),
        cancelled=bool(data.get("cancelled")),
        duration_s=float(data.get("duration_s", 0.0)),
    )
