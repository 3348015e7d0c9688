"""What the E2B sandbox does with the remote side: reaching the sandbox, helper commands, and keeping a command's
output stream attached (after a network drop, and around pausing the sandbox itself).

Split out of ``engine.sandbox.e2b`` as a base class of :class:`~engine.sandbox.e2b.E2BSandbox`, which holds the
state declared here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from engine.sandbox._e2b_pool import E2BPool, describe, network_retries
from engine.sandbox._e2b_run import E2BRun
from engine.sandbox.base import OutputBacklog, SandboxClosed, SandboxError

if TYPE_CHECKING:
    from e2b import AsyncSandbox

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Attempts at an SDK call (file, helper command) while the trouble looks like the network's.
SDK_ATTEMPTS = 4

#: Attempts at re-attaching to a command whose output stream broke, before the run fails.
REATTACH_ATTEMPTS = 5

#: How long output must have been quiet before the sandbox itself is paused (what was in flight has arrived).
QUIET_BEFORE_PAUSE_S = 1.0


class E2BRemote:
    """The remote half of an E2B sandbox (see the module docstring)."""

    local_workdir: Path
    _pool: E2BPool
    _key: str
    _network: bool
    _metadata: dict[str, str]
    _box: AsyncSandbox | None
    _acquiring: asyncio.Lock | None
    _run: E2BRun | None
    _paused: bool
    _box_paused: bool
    _box_pausing: bool
    _pausing: asyncio.Future[None] | None
    _closed: bool

    async def _on_chunk(self, run: E2BRun, stream: str, chunk: str, backlog: OutputBacklog | None) -> None:
        raise NotImplementedError

    async def _sandbox(self) -> AsyncSandbox:
        if self._closed:
            raise SandboxClosed("the sandbox was closed")
        if self._acquiring is None:
            self._acquiring = asyncio.Lock()
        async with self._acquiring:
            if self._box is None:
                self._box = await self._pool.acquire(
                    self._key, self.local_workdir, network=self._network, metadata=self._metadata
                )
            return self._box

    async def _control(self, script: str, limit_s: float = 120.0) -> str:
        """Run a helper command in the sandbox (not the task's: it may run beside it) and return its stdout."""
        from e2b.sandbox.commands.command_handle import CommandExitException

        box = await self._sandbox()
        try:
            result = await self._retrying(lambda: box.commands.run(script, timeout=limit_s, envs={"LC_ALL": "C"}))
        except CommandExitException as exc:
            raise SandboxError(f"E2B: a helper command failed (exit {exc.exit_code}): {exc.stderr[-300:]}") from None
        return result.stdout or ""

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` retried with backoff while its trouble looks like the network's; what finally fails is a
        :class:`SandboxError` saying why (never the API key). Exceptions of ours and the SDK's "not found" and
        command-exit errors pass through for the caller to interpret."""
        from e2b.exceptions import NotFoundException
        from e2b.sandbox.commands.command_handle import CommandExitException

        try:
            async for attempt in network_retries(SDK_ATTEMPTS, first_s=0.2, max_s=4.0):
                with attempt:
                    return await call()
        except (SandboxError, NotFoundException, CommandExitException):
            raise
        except Exception as exc:
            raise SandboxError(f"E2B: {describe(exc, self._pool.api_key)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reattach_lost(self, run: E2BRun, lost: BaseException) -> None:
        """Re-attach to the command after its output stream broke, retrying with backoff while the trouble looks
        like the network's. Output the command wrote while no stream was attached is not delivered (envd keeps no
        backlog). Raises SandboxError when it cannot."""
        from e2b.exceptions import NotFoundException

        log.warning("lost the output stream of an E2B command (%s); re-attaching", describe(lost, self._pool.api_key))
        try:
            async for attempt in network_retries(REATTACH_ATTEMPTS, first_s=0.2, max_s=4.0):
                with attempt:
                    await self._reattach(run)
        except NotFoundException:
            raise SandboxError(
                "E2B: the command ended while its output stream was lost; its exit status is unknown"
            ) from None
        except Exception as exc:
            raise SandboxError(
                f"E2B: lost the command's output stream ({describe(lost, self._pool.api_key)}) and could not "
                f"re-attach: {describe(exc, self._pool.api_key)}"
            ) from None

    async def _pause_box_later(self, run: E2BRun, after: float) -> None:
        """Pause the sandbox itself once the processes have been frozen ``after`` seconds and output is quiet."""
        await asyncio.sleep(after)
        # Output time is a clock reading, not an event: sleep until it has been quiet long enough.
        while (still := QUIET_BEFORE_PAUSE_S - (time.monotonic() - run.last_output)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(still)
        box = self._box
        if box is None or run.handle is None or not self._paused:
            return
        self._box_pausing = True  # from here on a resume waits for this to finish instead of interrupting it
        run.detached = True
        await run.handle.disconnect()
        try:
            await box.pause()
        except Exception as exc:
            log.warning("could not pause E2B sandbox %s: %s", box.sandbox_id, describe(exc, self._pool.api_key))
        else:
            self._box_paused = True
        finally:
            if not self._box_paused:
                await self._reattach_or_let_go(run)

    async def _stop_box_pause(self) -> None:
        """Call off a pending pause of the sandbox itself, or let one under way finish (its state is then known)."""
        pausing, self._pausing = self._pausing, None
        if pausing is None:
            return
        if not self._box_pausing:
            pausing.cancel()
        with contextlib.suppress(BaseException):
            await pausing
        self._box_pausing = False

    async def _wake_box(self) -> None:
        """Resume a paused sandbox (connecting to it resumes it) and re-attach the command's output."""
        box, run = self._box, self._run
        if box is None:
            return
        try:
            await box.connect(**self._pool.connection)
        except Exception as exc:
            raise SandboxError(f"E2B: could not resume the sandbox: {describe(exc, self._pool.api_key)}") from None
        self._box_paused = False
        if run is not None:
            await self._reattach_or_let_go(run)

    async def _reattach_or_let_go(self, run: E2BRun) -> None:
        """Re-attach after our own detach; if that fails, hand over to the wait loop, which retries with backoff
        (``_reattach_lost``) and fails the run if it cannot: never leave a run detached with nobody re-attaching."""
        try:
            await self._reattach(run)
        except Exception:
            run.detached = False
            run.changed()

    async def _reattach(self, run: E2BRun) -> None:
        assert self._box is not None and run.pid is not None and run.handle is not None
        old = run.handle
        run.handle = await self._box.commands.connect(
            run.pid,
            timeout=0,
            on_stdout=lambda chunk: self._on_chunk(run, "stdout", chunk, run.backlog),
            on_stderr=lambda chunk: self._on_chunk(run, "stderr", chunk, run.backlog),
        )
        del old
        run.detached = False
        run.changed()
