"""The local sandbox: commands run as child processes of the engine, in bubblewrap when it is installed.

Two modes, one behaviour:

- **bwrap** (default when ``bwrap`` is on ``PATH`` and works): the command runs in
  ``bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --bind WORKDIR WORKDIR --unshare-all
  --die-with-parent``. The whole filesystem is read-only except the working directory, ``/tmp`` is private, and
  there is no network unless ``network=True`` (``--share-net``). bwrap forks: our child is the outer bwrap, whose
  child is bwrap again as pid 1 of a new pid namespace, whose child is ``/bin/sh``. That inner init ignores
  SIGTERM from outside (the kernel drops signals a namespace init has no handler for), so SIGTERM goes to the
  command's processes themselves; when the shell dies the init exits and the kernel kills whatever else is left
  in the namespace, so nothing escapes, not even a daemon that double-forked and called ``setsid``.
- **plain** (no bubblewrap): ``/bin/sh -c`` in a new session and process group, with resource limits. There is
  no filesystem or network isolation; only the environment is scrubbed. A process that calls ``setsid`` and is
  orphaned before we ever see it can escape (use bwrap where that matters).

In both modes the process runs in a new session (so the terminal's Ctrl-C never reaches it), with rlimits set
in the child before ``exec``, and with the engine's environment replaced by a minimal one. Signals reach every
process of the tree: ``killpg`` for the group (atomic, even against a member that is forking) plus each process
found by walking the tree with psutil (see ``_proctree``). Pause sends SIGSTOP and waits until every process is
actually stopped; kill sends SIGTERM, then SIGCONT (a stopped process cannot act on SIGTERM), then SIGKILL to
everything still alive after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from engine.sandbox import _proctree
from engine.sandbox._isolation import Limits, _bwrap_argv, _rlimit_setter, bwrap_unavailable_reason
from engine.sandbox._runproto import _exit_status, _flip, _Run, _RunProtocol
from engine.sandbox.base import (
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

#: How often a wait for processes to stop or die looks again.
POLL_S = 0.05

#: After the command exits, how long its output pipes may stay open (held by an escaped process) before we stop
#: reading them. Everything written before the exit is in the pipe already and is read well within this.
DRAIN_TIMEOUT_S = 5.0

#: How long ``pause`` waits for every process to report that it is stopped, and how long ``kill`` waits for
#: SIGKILLed processes to disappear, before carrying on (a process in uninterruptible sleep can take a while).
SETTLE_TIMEOUT_S = 5.0


class LocalSandbox(Sandbox):
    """Runs commands on this machine, isolated by bubblewrap when available, else in a process group with rlimits.

    Args:
        workdir: The task's working directory (created if missing). Reuse the same path for the task's retries.
        use_bwrap: ``True`` requires bubblewrap (raises :class:`SandboxUnavailable` if it does not work here),
            ``False`` never uses it, ``None`` uses it when ``bwrap`` is on ``PATH`` and works.
        limits: Resource limits for every process of a command.
        kill_grace_s: Seconds between SIGTERM and SIGKILL when a command is stopped.

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

    def _argv(self, command: str, network: bool, readable: Sequence[Path]) -> list[str]:
        if self._bwrap is None:
            return ["/bin/sh", "-c", command]
        return _bwrap_argv(self._bwrap, self.workdir, command, network=network, readable=readable)

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
    ) -> RunResult:
        if self._closed:
            raise SandboxClosed(f"{self!r} is closed")
        if self._run is not None or self._starting:
            raise SandboxBusy(f"{self!r} is already running a command")
        loop = asyncio.get_running_loop()
        started = loop.time()
        protocol = _RunProtocol(loop, on_output, redact, backlog)
        self._starting = True
        self._pause_when_started = self._kill_when_started = False
        try:
            # start_new_session: own session and process group (signals reach the whole group; the terminal's
            # Ctrl-C does not). The rlimits are set in the child after setsid and before exec.
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self._argv(command, network, readable),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=self._environment(env),
                start_new_session=True,
                preexec_fn=_rlimit_setter(self.limits),
            )
        finally:
            self._starting = False
        pid = transport.get_pid()
        try:
            root: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:  # it already ended and was reaped; its group may live on
            root = None
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
            self._run = None
            transport.close()
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
            try:
                await asyncio.wait_for(flip.wait(), remaining)
            except TimeoutError:
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

    # -- the process tree -----------------------------------------------------------------------------------------

    def _tree(self, run: _Run) -> list[psutil.Process]:
        """Every live process of the run's tree (see ``_proctree``), remembered in ``run.seen``."""
        candidates = [run.root, *_proctree.descendants(run.root)] if run.root is not None else []
        candidates.extend(_proctree.group_members(run.pgid))
        candidates.extend(run.seen.values())
        alive: dict[int, psutil.Process] = {}
        for proc in candidates:
            if proc.pid not in alive and _proctree.is_alive(proc):
                alive[proc.pid] = proc
        run.seen.update(alive)
        return list(alive.values())

    def _command_processes(self, run: _Run, tree: list[psutil.Process]) -> list[psutil.Process]:
        """The processes a polite SIGTERM should go to.

        In plain mode, all of them. In bwrap mode, the command's processes inside the sandbox: the outer bwrap
        would die at once and orphan the rest to the kernel's SIGKILL, and the inner one, pid 1 of the namespace,
        ignores SIGTERM from outside. Until the command has started, the outer bwrap (which takes everything
        down with it, ``--die-with-parent``).
        """
        if self._bwrap is None or run.root is None:
            return tree
        bwraps = {run.root.pid, *(init.pid for init in _proctree.children(run.root))}
        return [proc for proc in tree if proc.pid not in bwraps] or [run.root]

    def pids(self) -> list[int]:
        run = self._run
        return sorted(proc.pid for proc in self._tree(run)) if run is not None else []

    def _signal_tree(self, run: _Run, sig: signal.Signals, tree: list[psutil.Process]) -> None:
        """Send ``sig`` to the whole group at once, then to each process of ``tree`` (covers ones that left it)."""
        if not run.protocol.exited.done() or tree:
            # While the leader or any member lives, the group id cannot be reused by an unrelated group.
            _proctree.send_group(run.pgid, sig)
        _proctree.send(tree, sig)

    def _stop_tree(self, run: _Run) -> asyncio.Task[None]:
        """Stop the run's whole tree; concurrent callers (kill, timeout, cancellation) share one attempt.

        Callers await it through ``asyncio.shield``: cancelling a caller must not cancel the stopping.
        """
        if run.stopping is None or run.stopping.done():
            run.stopping = asyncio.create_task(self._terminate(run))
        return run.stopping

    async def _terminate(self, run: _Run) -> None:
        """SIGTERM, SIGCONT, then SIGKILL to what is still alive after the grace period; wait until all are gone."""
        loop = asyncio.get_running_loop()
        tree = self._tree(run)
        if not tree and run.protocol.exited.done():
            return
        termed: set[int] = set()
        deadline = loop.time() + self.kill_grace_s
        while True:
            # SIGTERM to each process once, including ones forked since the last look; then SIGCONT, so a paused
            # process acts on it (after, not before: a paused command must not run on and print meanwhile).
            fresh = [proc for proc in self._command_processes(run, tree) if proc.pid not in termed]
            _proctree.send(fresh, signal.SIGTERM)
            if not termed:
                self._signal_tree(run, signal.SIGCONT, tree)
            else:
                _proctree.send(fresh, signal.SIGCONT)
            termed.update(proc.pid for proc in fresh)
            if run.paused:
                run.paused = False
                _flip(run)
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_S)
            tree = self._tree(run)
            if not tree and run.protocol.exited.done():
                return
        log.info("%r: %d process(es) outlived SIGTERM by %.1fs; sending SIGKILL", self, len(tree), self.kill_grace_s)
        settle = loop.time() + SETTLE_TIMEOUT_S
        while tree or not run.protocol.exited.done():
            self._signal_tree(run, signal.SIGKILL, tree)
            if loop.time() >= settle:
                log.warning("%r: processes %s survive SIGKILL", self, [proc.pid for proc in tree])
                break
            await asyncio.sleep(POLL_S)
            tree = self._tree(run)
        await asyncio.shield(run.protocol.exited)

    # -- controls -------------------------------------------------------------------------------------------------

    async def pause(self) -> None:
        run = self._run
        if run is None and self._starting:
            self._pause_when_started = True
            return
        if run is None or run.paused or (run.stopping is not None and not run.stopping.done()):
            return
        # The group at once (the kernel makes a member that is forking stop too), then every process that left
        # the group, again until no new one shows up (one of them may have forked before it stopped).
        self._signal_tree(run, signal.SIGSTOP, [])
        stopped: set[int] = set()
        for _ in range(10):
            tree = self._tree(run)
            fresh = [proc for proc in tree if proc.pid not in stopped]
            if not fresh:
                break
            _proctree.send(fresh, signal.SIGSTOP)
            stopped.update(proc.pid for proc in fresh)
        run.paused = True
        _flip(run)
        # Signals are delivered asynchronously: return only once nothing of the tree runs any more. There is no
        # event for "stopped" short of ptrace or waitpid (which only the parent may call), so look at /proc.
        loop = asyncio.get_running_loop()
        settle = loop.time() + SETTLE_TIMEOUT_S
        while True:
            running = [proc.pid for proc in self._tree(run) if not _proctree.is_frozen(proc)]
            if not running:
                return
            if loop.time() >= settle:
                log.warning("%r: processes %s did not stop within %.0fs", self, running, SETTLE_TIMEOUT_S)
                return
            await asyncio.sleep(POLL_S)

    async def resume(self) -> None:
        self._pause_when_started = False
        run = self._run
        if run is None or not run.paused:
            return
        self._signal_tree(run, signal.SIGCONT, self._tree(run))
        run.paused = False
        _flip(run)

    async def kill(self) -> None:
        run = self._run
        if run is None:
            self._kill_when_started = self._starting
            return
        if not run.protocol.exited.done():
            run.stop_requested = True
        await asyncio.shield(self._stop_tree(run))

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
