"""The local sandbox: commands run as child processes of the engine, in bubblewrap when it is installed.

Two modes, one behaviour:

- **bwrap** (default when ``bwrap`` is on ``PATH`` and works): the command runs in ``bwrap --ro-bind / / --dev /dev
  --proc /proc --tmpfs /tmp [--ro-bind INSTALLATION] [--tmpfs HIDDEN ...] --bind WORKDIR WORKDIR --unshare-all
  --die-with-parent``. The whole filesystem is read-only except the working directory, ``/tmp`` is private
  (agentdeck's own installation bound back if it lies there), the ``hidden`` paths (the engine's database, socket and
  other tasks' directories) are masked, and there is no network unless ``network=True`` (``--share-net``). bwrap
  forks: our child is the outer bwrap, whose child is bwrap again as pid 1 of a new pid namespace, whose child is
  ``/bin/sh``. That inner init ignores SIGTERM from outside (the kernel drops signals a namespace init has no handler
  for), so SIGTERM goes to the command's processes themselves; when the shell dies the init exits and the kernel kills
  whatever else is left in the namespace, so nothing escapes, not even a daemon that double-forked and called
  ``setsid``.
- **plain** (no bubblewrap): ``/bin/sh -c`` in a new session and process group, with resource limits. There is
  no filesystem or network isolation; only the environment is scrubbed. A process that calls ``setsid`` and is
  orphaned before we ever see it can escape (use bwrap where that matters).

In both modes the process runs in a new session (so the terminal's Ctrl-C never reaches it), is killed when the
engine dies (PR_SET_PDEATHSIG, armed before ``exec``), joins its task cgroup (memory and process budget for the
whole task, ``_cgroup``) and gets its rlimits before ``exec``, and sees a minimal environment instead of the
engine's. A run record beside the working directory lets the next sandbox on it kill what a crashed engine left
running (``_leftovers``). Pause, resume and kill reach every process of the tree (``_treecontrol``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from db._aio import wait_event
from engine.sandbox import _leftovers
from engine.sandbox._cgroup import cgroup_support
from engine.sandbox._isolation import Limits, bwrap_unavailable_reason
from engine.sandbox._launch import Launch, prepare
from engine.sandbox._runproto import _exit_status, _Run, _RunProtocol
from engine.sandbox._treecontrol import _TreeControl
from engine.sandbox.base import (
    LinesCallback,
    OutputBacklog,
    OutputCallback,
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxClosed,
    SandboxUnavailable,
    resolve_inside,
)

log = logging.getLogger(__name__)

#: After the command exits, how long its output pipes may stay open (held by an escaped process) before we stop
#: reading them. Everything written before the exit is in the pipe already and is read well within this.
DRAIN_TIMEOUT_S = 5.0


class LocalSandbox(_TreeControl, Sandbox):
    """Runs commands on this machine, isolated by bubblewrap when available, else in a process group with rlimits.

    Args:
        workdir: The task's working directory (created if missing). Reuse the same path for the task's retries.
        use_bwrap: ``True`` requires bubblewrap (raises :class:`SandboxUnavailable` if it does not work here),
            ``False`` never uses it, ``None`` uses it when ``bwrap`` is on ``PATH`` and works.
        limits: Resource limits for every process of a command, and for the task as a whole.
        kill_grace_s: Seconds between SIGTERM and SIGKILL when a command is stopped.
        hidden: Paths the command must not see (bwrap mode): the engine's database, control socket and the root
            of all task directories. The working directory and ``readable`` directories under them stay visible.
        use_cgroup: ``True`` requires a task cgroup (raises :class:`SandboxUnavailable` when none can be made),
            ``False`` never makes one (rlimits only), ``None`` uses one when the machine allows.

    Creating a sandbox on a working directory whose last run did not end cleanly (its engine was killed) first
    kills whatever that run left alive.

    Without bubblewrap ("plain" mode) nothing isolates the filesystem or the network: ``network=False`` cannot
    be enforced there, and the command can write wherever the engine's user can. Check :attr:`uses_bwrap`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        use_bwrap: bool | None = None,
        limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing one default instance is safe
        kill_grace_s: float = 3.0,
        hidden: Sequence[Path] = (),
        use_cgroup: bool | None = None,
    ) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # Resolved, because bwrap mounts the directory at this path and symlinked mount points do not bind.
        self.workdir = workdir.resolve()
        reason = bwrap_unavailable_reason() if use_bwrap is not False else None
        if use_bwrap and reason is not None:
            raise SandboxUnavailable(f"bubblewrap sandbox requested but unusable: {reason}")
        self._bwrap = shutil.which("bwrap") if (use_bwrap is not False and reason is None) else None
        self.limits = limits
        self.kill_grace_s = kill_grace_s
        self.hidden = tuple(Path(path) for path in hidden)
        self._cgroups = cgroup_support() if use_cgroup is not False else None
        if use_cgroup and self._cgroups is None:
            raise SandboxUnavailable("task cgroups requested but this process cannot create any cgroup")
        _leftovers.reap(self.workdir)
        self._launch: Launch | None = None
        self._run: _Run | None = None
        self._starting = False
        #: ``pause`` or ``kill`` was called while the command was being started: apply it as soon as it exists.
        self._pause_when_started = False
        self._kill_when_started = False
        self._closed = False

    @property
    def uses_bwrap(self) -> bool:
        """Commands run inside bubblewrap (filesystem and network isolation), not just in a process group."""
        return self._bwrap is not None

    @property
    def paused(self) -> bool:
        return self._run is not None and self._run.paused

    @property
    def running(self) -> bool:
        return self._run is not None

    def __repr__(self) -> str:
        mode = "bwrap" if self.uses_bwrap else "plain"
        return f"LocalSandbox({str(self.workdir)!r}, mode={mode})"

    # -- running ------------------------------------------------------------------------------------------------

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """A minimal environment: nothing of the engine's (API keys live there) except what a shell needs."""
        base = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.workdir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
        }
        return base | dict(env or {})

    @property
    def uses_cgroup(self) -> bool:
        """Commands run in a task cgroup (whole-task limits where the machine offers them; see ``_cgroup``)."""
        return self._cgroups is not None

    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        # The contract's name; it cannot be an asyncio.timeout around the call, as paused time does not count.
        timeout: float | None = None,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        redact: Sequence[str] = (),
        network: bool = False,
        readable: Sequence[Path] = (),
        backlog: OutputBacklog | None = None,
        on_lines: LinesCallback | None = None,
    ) -> RunResult:
        if self._closed:
            raise SandboxClosed(f"{self!r} is closed")
        if self._run is not None or self._starting:
            raise SandboxBusy(f"{self!r} is already running a command")
        loop = asyncio.get_running_loop()
        started = loop.time()
        cancelled_while_starting = False
        protocol = _RunProtocol(loop, on_output, redact, backlog, on_lines)
        self._starting = True
        self._pause_when_started = self._kill_when_started = False
        launch = self._launch = prepare(
            workdir=self.workdir,
            bwrap=self._bwrap,
            command=command,
            env=self._environment(env),
            limits=self.limits,
            cgroups=self._cgroups,
            network=network,
            readable=readable,
            hidden=self.hidden,
        )
        try:
            # start_new_session: own session and process group (signals reach the whole group; the terminal's
            # Ctrl-C does not). The preexec runs in the child after setsid and before exec (see child_setup).
            starting = asyncio.ensure_future(
                loop.subprocess_exec(
                    lambda: protocol,
                    *launch.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self.workdir,
                    env=launch.env,
                    start_new_session=True,
                    preexec_fn=launch.preexec,
                )
            )
            try:
                transport, _ = await asyncio.shield(starting)
            except asyncio.CancelledError:
                # Cancelled mid-start (a fail_fast sibling, a workflow cancel). Not passed on to the start: Python
                # 3.11's subprocess_exec, cancelled before it connected the pipes, waits forever for them. Let it
                # finish, stop what started, then end cancelled.
                while not starting.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(starting)
                transport, _ = starting.result()
                cancelled_while_starting = self._kill_when_started = True
        except BaseException:
            self._launch = None
            launch.finish()
            raise
        finally:
            self._starting = False
        pid = transport.get_pid()
        try:
            root: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:  # it already ended and was reaped; its group may live on
            root = None
        launch.spawned(root)
        run = _Run(transport=transport, protocol=protocol, root=root, pgid=pid)
        self._run = run
        try:
            if self._kill_when_started:
                await self.kill()
            elif self._pause_when_started:
                await self.pause()
            timed_out = await self._supervise(run, timeout)
            # The command has ended; stop whatever it left behind (plain mode: background jobs in the group).
            await asyncio.shield(self._stop_tree(run))
            await self._drain(run)
            if protocol.failed.done():
                raise protocol.failed.result()
        except BaseException:
            # Cancelled, or on_output raised: nothing may outlive the run, whatever happens meanwhile.
            await _finish_despite_cancellation(self._stop_tree(run))
            raise
        finally:
            self._run = self._launch = None
            transport.close()
            launch.finish()
        if cancelled_while_starting:
            raise asyncio.CancelledError
        stopped = timed_out or run.stop_requested
        return RunResult(
            exit_code=None if stopped else _exit_status(transport.get_returncode()),
            timed_out=timed_out,
            cancelled=run.stop_requested and not timed_out,
            duration_s=loop.time() - started,
        )

    async def _supervise(self, run: _Run, limit_s: float | None) -> bool:
        """Wait until the command exits; stop it if it times out. Returns whether it timed out."""
        protocol = run.protocol
        clock = asyncio.ensure_future(self._timeout_clock(run, limit_s)) if limit_s is not None else None
        try:
            waiting: set[asyncio.Future[Any]] = {protocol.exited, protocol.failed}
            if clock is not None:
                waiting.add(clock)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if protocol.failed.done():
                raise protocol.failed.result()
            if protocol.exited.done() or clock not in done:
                return False
            await asyncio.shield(self._stop_tree(run))
            return True
        finally:
            if clock is not None:
                clock.cancel()

    async def _timeout_clock(self, run: _Run, limit_s: float) -> None:
        """Return once the command has been *running* (not paused) for ``limit_s`` seconds."""
        loop = asyncio.get_running_loop()
        remaining = limit_s
        while remaining > 0:
            flip = run.pause_flip
            if run.paused:
                await flip.wait()
                continue
            began = loop.time()
            if not await wait_event(flip, remaining):  # not wait_for: it can swallow the task's cancellation
                return
            remaining -= loop.time() - began

    async def _drain(self, run: _Run) -> None:
        """Read the output that is still in the pipes once the command has ended."""
        # Time held by flow control does not count: that output is there, it is being stored.
        if not await run.protocol.wait_drained(DRAIN_TIMEOUT_S):
            log.warning(
                "%r: output pipes still open %.0fs after the command ended (held by an escaped process?); "
                "not reading further",
                self,
                DRAIN_TIMEOUT_S,
            )

    async def close(self) -> None:
        self._closed = True
        await self.kill()

    # -- files ----------------------------------------------------------------------------------------------------

    async def write_file(self, relpath: str, data: bytes | str) -> None:
        target = resolve_inside(self.workdir, relpath)
        payload = data.encode() if isinstance(data, str) else data

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)

        await asyncio.to_thread(write)

    async def read_file(self, relpath: str) -> bytes:
        target = resolve_inside(self.workdir, relpath)
        return await asyncio.to_thread(target.read_bytes)


async def _finish_despite_cancellation(work: asyncio.Task[None]) -> None:
    """Wait for ``work`` even if we are cancelled meanwhile (the caller re-raises its own cancellation after)."""
    while not work.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(work)
    if not work.cancelled() and work.exception() is not None:
        log.error("stopping a sandbox command failed", exc_info=work.exception())
