"""The E2B sandbox: a task's commands run in an E2B cloud sandbox (a micro-VM), through the e2b SDK.

Same contract as the local backend (``engine.sandbox.base``, the conformance suite): output streams line by line as
it is produced, timeouts exclude paused time, and kill, timeout and cancellation stop the command's whole process
tree. How, over what envd (the agent in the sandbox) offers:

- **Start.** The command runs as ``exec setsid /bin/sh -c COMMAND`` in its working directory (``_e2b_tree.launch``),
  so the pid envd reports leads the whole tree's session. ``on_stdout``/``on_stderr`` chunks are split into lines
  here and redacted; when the caller's store falls behind (``backlog``) the chunk callback waits, the SDK stops
  reading, envd's bounded channels fill and the command blocks on its pipe: output is read as fast as it is stored.
- **Stop.** envd can only SIGKILL the one process, so a separate command in the same sandbox SIGTERMs the tree,
  then SIGKILLs what is left after the grace period (``_e2b_tree.stop_tree``). After every run the same sweep removes
  background processes the command left behind.
- **Pause.** The tree is frozen with SIGSTOP at once (no CPU, no output) and thawed with SIGCONT. When a pause lasts
  ``AGENTDECK_E2B_PAUSE_AFTER`` seconds the sandbox itself is paused (``sandbox.pause()``: E2B stops charging);
  resume reconnects (``AsyncSandbox.connect``), re-attaches the command's output stream and thaws it.
- **Files** are read and written through envd's ``/files`` under the working directory
  (``AGENTDECK_E2B_WORKDIR/WORKFLOW/TASK`` inside the sandbox).

Exit statuses are the shell's: envd reports a death by signal as ``-1`` and ``signal: killed``, turned back into
``128 + N`` here (``_e2b_run``). The remote sandboxes themselves (made on first use, shared by a task's retries,
always killed) belong to an :class:`~engine.sandbox._e2b_pool.E2BPool`; reaching them and keeping a command's output
stream attached is ``_e2b_remote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.sandbox import _e2b_tree
from engine.sandbox._e2b_pool import E2BPool, describe
from engine.sandbox._e2b_remote import E2BRemote
from engine.sandbox._e2b_run import E2BRun, exit_status
from engine.sandbox.base import (
    LinesCallback,
    OutputBacklog,
    OutputCallback,
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxClosed,
    SandboxError,
    SandboxUnavailable,
)
from engine.sandbox.e2b_settings import e2b_settings

if TYPE_CHECKING:
    from e2b import AsyncSandbox
    from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

log = logging.getLogger(__name__)

#: How long a cancelled run still waits for envd to report the command's pid (so it can stop the command).
START_PATIENCE_S = 30.0


class E2BSandbox(E2BRemote, Sandbox):
    """Runs a task's commands in an E2B sandbox (see the module docstring).

    Args:
        workdir: The task's local working directory: it names the one in the sandbox and keeps the record of the
            remote sandbox (nothing of the task runs here).
        pool: Who makes, shares and kills the remote sandboxes (default: one of its own, from the environment's
            settings, closed with the sandbox).
        key: Sandboxes with the same key share one remote sandbox (default: ``workdir``, one per task).
        network: Whether the sandbox may reach the internet.
        metadata: Labels on the remote sandbox (workflow and task ids), visible in E2B's dashboard and listings.
    """

    remote = True

    def __init__(
        self,
        workdir: Path,
        *,
        pool: E2BPool | None = None,
        key: str | None = None,
        network: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._owns_pool = pool is None
        if pool is None:
            pool = E2BPool(e2b_settings())
        if (problem := pool.missing_key()) is not None:
            raise SandboxUnavailable(problem)
        self.local_workdir = workdir
        self.workdir = Path(pool.remote_workdir(workdir))
        self.kill_grace_s = pool.settings.kill_grace
        self._pool = pool
        self._key = key or str(workdir)
        self.release_when_done = key is None
        self._network = network
        self._metadata = {"agentdeck": "1", **(metadata or {})}
        self._box: AsyncSandbox | None = None
        self._acquiring: asyncio.Lock | None = None
        self._run: E2BRun | None = None
        self._busy = False
        self._paused = False
        self._box_paused = False
        self._pausing: asyncio.Future[None] | None = None
        self._box_pausing = False
        self._closed = False

    # ---- the remote sandbox -----------------------------------------------------------------------------

    # ---- running a command ------------------------------------------------------------------------------

    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        redact: Sequence[str] = (),
        network: bool = False,
        readable: Sequence[Path] = (),
        backlog: OutputBacklog | None = None,
        on_lines: LinesCallback | None = None,
    ) -> RunResult:
        if self._closed:
            raise SandboxClosed("the sandbox was closed")
        if self._busy:
            raise SandboxBusy("a command is already running in this sandbox")
        self._busy = True
        run = self._run = E2BRun(on_output, on_lines, redact)
        run.backlog = backlog
        started = time.monotonic()
        try:
            box = await self._sandbox()
            envs = {
                "HOME": str(self.workdir),
                "TERM": "dumb",
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
            starting = asyncio.ensure_future(
                box.commands.run(
                    _e2b_tree.launch(command, str(self.workdir)),
                    background=True,
                    envs=envs,
                    cwd="/",
                    on_stdout=lambda chunk: self._on_chunk(run, "stdout", chunk, backlog),
                    on_stderr=lambda chunk: self._on_chunk(run, "stderr", chunk, backlog),
                    timeout=0,
                    retain_output=False,
                )
            )
            await self._started(run, starting)
            if self._paused and run.pid is not None:  # paused while it started
                await self._control(_e2b_tree.signal_tree(run.pid, "STOP"))
            if run.stopped_by == "kill":  # killed while it started
                await self._stop_tree(run)
            exit_code = await self._wait(run, timeout)
        except asyncio.CancelledError:
            if run.pid is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._stop_tree(run))
            raise
        except SandboxError:
            raise
        except Exception as exc:
            if run.failure is not None:
                raise run.failure from None
            raise SandboxError(f"E2B: {describe(exc, self._pool.api_key)}") from None
        finally:
            try:
                # Shielded: cancelled here (a fail_fast sibling, the engine closing), the sweep still completes.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._sweep(run))
            finally:
                self._run = None
                self._busy = False
                self._paused = False
                run.ended.set()
        if run.failure is not None:
            raise run.failure
        return RunResult(
            exit_code=None if run.stopped_by else exit_code,
            timed_out=run.stopped_by == "timeout",
            cancelled=run.stopped_by == "kill",
            duration_s=time.monotonic() - started,
        )

    async def _sweep(self, run: E2BRun) -> None:
        """After a run: stop what the command left running in the background (its session outlives it)."""
        await self._stop_box_pause()
        if run.stopping is not None:
            with contextlib.suppress(Exception):
                await run.stopping
        if run.pid is None:
            return
        if self._box_paused:
            await self._wake_box()
        await self._control(_e2b_tree.stop_tree(run.pid, self.kill_grace_s))

    async def _started(self, run: E2BRun, starting: asyncio.Future[AsyncCommandHandle[Any]]) -> None:
        """Wait for envd to report the command started. Cancelled meanwhile, it still waits (a while) for the pid:
        the process may exist already, and only with its pid can the tree be stopped."""
        try:
            run.handle = await asyncio.shield(starting)
        except asyncio.CancelledError:
            await asyncio.wait({starting}, timeout=START_PATIENCE_S)
            if starting.done() and not starting.cancelled() and starting.exception() is None:
                run.handle = starting.result()
                run.pid = run.handle.pid
            raise
        run.pid = run.handle.pid

    async def _on_chunk(self, run: E2BRun, stream: str, chunk: str, backlog: OutputBacklog | None) -> None:
        if run.failure is not None:
            return
        run.last_output = time.monotonic()
        try:
            run.deliver(stream, run.splitters[stream].feed(chunk.encode()))
        except Exception as exc:  # the caller's callback broke: the run fails, and nothing of it may go on
            run.failure = exc
            run.stopping = asyncio.ensure_future(self._stop_tree(run))
            return
        if backlog is not None and (waiting := backlog()) is not None:
            await waiting

    async def _wait(self, run: E2BRun, limit_s: float | None) -> int:
        """Wait for the command to end; stop it when it outruns ``timeout`` (paused time not counted). The output
        stream may be swapped meanwhile (the sandbox itself paused and resumed): the wait follows the new one."""
        from e2b.sandbox.commands.command_handle import CommandExitException

        left = limit_s
        while True:
            assert run.handle is not None
            handle = run.handle
            ending = asyncio.ensure_future(handle.wait())
            try:
                while not ending.done() or (run.detached and run.handle is handle):
                    changed = run.next_change()
                    counting = left is not None and not self._paused and not run.detached
                    began = time.monotonic()
                    waits: set[asyncio.Future[Any]] = {changed} if ending.done() else {ending, changed}
                    await asyncio.wait(waits, timeout=left if counting else None, return_when="FIRST_COMPLETED")
                    changed.cancel()
                    if counting and left is not None:
                        left -= time.monotonic() - began
                        if not ending.done() and left <= 0:
                            left = None  # the clock has run out, once: whatever happens next, it counts no more
                            if run.stopped_by is None:
                                run.stopped_by = "timeout"
                                await self._stop_tree(run)
                if run.handle is not handle:  # detached on purpose and attached again: follow the new stream
                    continue
                if ending.cancelled():  # detached on purpose, and attaching again failed: keep trying
                    await self._reattach_lost(run, SandboxError("the output stream was let go to pause the sandbox"))
                    continue
                try:
                    result = ending.result()
                    code, error = result.exit_code, result.error
                except CommandExitException as exc:
                    code, error = exc.exit_code, exc.error
                except Exception as exc:  # the stream broke (network): the command may well still run
                    if run.stopped_by is not None or run.failure is not None:
                        raise
                    await self._reattach_lost(run, exc)
                    continue
                break
            finally:
                if not ending.done():
                    ending.cancel()
                    with contextlib.suppress(BaseException):
                        await ending
        for stream, splitter in run.splitters.items():
            if run.failure is None:
                with contextlib.suppress(Exception):
                    run.deliver(stream, splitter.flush())
        return exit_status(code, error)

    async def _stop_tree(self, run: E2BRun) -> None:
        """SIGTERM, then SIGKILL, the run's whole tree; returns when none of it runs."""
        if run.pid is None:
            return
        await self._stop_box_pause()
        if self._box_paused:
            await self._wake_box()
        await self._control(_e2b_tree.stop_tree(run.pid, self.kill_grace_s))
        if run.handle is not None:
            with contextlib.suppress(Exception):
                await run.handle.kill()

    # ---- pause, resume, kill ----------------------------------------------------------------------------

    async def pause(self) -> None:
        run = self._run
        if run is None or self._paused:
            return
        self._paused = True
        run.changed()
        if run.pid is not None:
            await self._control(_e2b_tree.signal_tree(run.pid, "STOP"))
            after = self._pool.settings.pause_after
            if after is not None and not self._pool.connection.get("debug"):
                self._pausing = asyncio.ensure_future(self._pause_box_later(run, after))

    async def resume(self) -> None:
        run = self._run
        if run is None or not self._paused:
            return
        await self._stop_box_pause()
        if self._box_paused:
            await self._wake_box()
        if run.pid is not None:
            await self._control(_e2b_tree.signal_tree(run.pid, "CONT"))
        self._paused = False
        run.changed()

    async def kill(self) -> None:
        run = self._run
        if run is None:
            return
        if run.stopped_by is None:
            run.stopped_by = "kill"
        await self._stop_tree(run)
        await run.ended.wait()

    # ---- files ------------------------------------------------------------------------------------------

    def _remote_path(self, relpath: str) -> str:
        if relpath.startswith("/"):
            raise ValueError(f"sandbox paths are relative to the working directory, got absolute path {relpath!r}")
        root = str(self.workdir)
        target = posixpath.normpath(posixpath.join(root, relpath))
        if target == root or not target.startswith(root + "/"):
            raise ValueError(f"path {relpath!r} leads outside the sandbox working directory {root}")
        return target

    async def write_file(self, relpath: str, data: bytes | str) -> None:
        target = self._remote_path(relpath)
        box = await self._sandbox()
        payload = data.encode() if isinstance(data, str) else data
        await self._retrying(lambda: box.files.write(target, payload))

    async def read_file(self, relpath: str) -> bytes:
        from e2b.exceptions import NotFoundException

        target = self._remote_path(relpath)
        box = await self._sandbox()
        try:
            return bytes(await self._retrying(lambda: box.files.read(target, format="bytes")))
        except NotFoundException:
            raise FileNotFoundError(f"no file {relpath!r} in the sandbox working directory") from None

    # ---- state ------------------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """The pid (inside the sandbox) of the command's session leader while it runs; not this machine's."""
        run = self._run
        return [run.pid] if run is not None and run.pid is not None else []

    async def tree(self) -> dict[int, tuple[str, str]]:
        """The running command's processes inside the sandbox: pid -> (start time, command line)."""
        run = self._run
        if run is None or run.pid is None:
            return {}
        found: dict[int, tuple[str, str]] = {}
        for line in (await self._control(_e2b_tree.list_tree(run.pid))).splitlines():
            pid, start, *command = line.split(" ", 2)
            found[int(pid)] = (start, command[0] if command else "")
        return found

    async def alive(self, processes: list[tuple[int, str]]) -> list[int]:
        """Which of ``(pid, start time)`` still run in the sandbox."""
        if not processes:
            return []
        return [int(p) for p in (await self._control(_e2b_tree.alive(processes))).split()]

    @property
    def paused(self) -> bool:
        return self._run is not None and self._paused

    @property
    def running(self) -> bool:
        return self._run is not None

    async def close(self) -> None:
        if self._closed:
            return
        if self._run is not None:
            with contextlib.suppress(Exception):
                await self.kill()
        self._closed = True
        if self._box is not None:
            self._box = None
            await self._pool.release(self._key)
        if self._owns_pool:
            await self._pool.close()
