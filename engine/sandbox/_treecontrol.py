"""Pausing, resuming and stopping a local command's whole process tree (the controls of ``LocalSandbox``).

Signals reach every process of the tree: ``killpg`` for the group (atomic, even against a member that is forking)
plus each process found by walking the tree with psutil (see ``_proctree``) and each member of the task cgroup
(which holds even a process that left the tree). Pause sends SIGSTOP and waits until every process is actually
stopped; kill sends SIGTERM, then SIGCONT (a stopped process cannot act on SIGTERM), then SIGKILL to everything
still alive after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import psutil

from engine.sandbox import _proctree
from engine.sandbox._launch import Launch
from engine.sandbox._runproto import _flip, _Run

log = logging.getLogger("engine.sandbox.local")

#: How often a wait for processes to stop or die looks again.
POLL_S = 0.05

#: How long ``pause`` waits for every process to report that it is stopped, and how long ``kill`` waits for
#: SIGKILLed processes to disappear, before carrying on (a process in uninterruptible sleep can take a while).
SETTLE_TIMEOUT_S = 5.0


class _TreeControl:
    """The process-tree half of ``LocalSandbox``: finding, signalling, freezing and stopping a run's processes."""

    _run: _Run | None
    _launch: Launch | None
    _bwrap: str | None
    _starting: bool
    _pause_when_started: bool
    _kill_when_started: bool
    kill_grace_s: float

    # -- the process tree -----------------------------------------------------------------------------------------

    def _tree(self, run: _Run) -> list[psutil.Process]:
        """Every live process of the run's tree (see ``_proctree``), remembered in ``run.seen``."""
        candidates = [run.root] if run.root is not None else []
        if self._launch is not None and self._launch.cgroup is not None:
            # The kernel keeps every process of the task in its cgroup, wherever it wandered: reading the cgroup
            # replaces two scans of every process on the machine (descendants, group members).
            candidates.extend(self._launch.members())
        else:
            candidates.extend(_proctree.descendants(run.root) if run.root is not None else [])
            candidates.extend(_proctree.group_members(run.pgid))
        candidates.extend(run.seen.values())
        alive: dict[int, psutil.Process] = {}
        for proc in candidates:
            if proc.pid not in alive and _proctree.is_alive(proc):
                alive[proc.pid] = proc
        run.seen.update(alive)
        if self._launch is not None:
            self._launch.record.add(list(alive.values()))
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
            if self._launch is not None:
                self._launch.kill_members()
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
