"""Everything one local command needs before it starts and after it ends: command line, environment, what the
child does before ``exec``, its task cgroup and its run record - and the cleanup of all that.

The order matters for the crash guarantees: the cgroup and the run record exist before the fork, the child joins
the cgroup and arms its parent-death signal before ``exec``, and the record goes only once the tree is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from engine.sandbox import _leftovers, _watchdog
from engine.sandbox._cgroup import CgroupSupport, TaskCgroup
from engine.sandbox._isolation import _MIB, Limits, _bwrap_argv, child_setup

log = logging.getLogger(__name__)


@dataclass
class Launch:
    """One command, prepared to start (``argv``, ``env``, ``preexec``) and tracked until :meth:`finish`."""

    argv: list[str]
    env: dict[str, str]
    preexec: Callable[[], None]
    record: _leftovers.RunRecord
    cgroup: TaskCgroup | None
    _fds: list[int] = field(default_factory=list)

    def spawned(self, root: psutil.Process | None) -> None:
        """The child exists (or already ended): release the cgroup files, remember its root process."""
        self._close_fds()
        if root is not None:
            self.record.spawned(root)

    def members(self) -> list[psutil.Process]:
        """Live members of the task cgroup (including ones that left the process tree)."""
        if self.cgroup is None:
            return []
        found = []
        for pid in self.cgroup.pids():
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        return found

    def kill_members(self) -> None:
        """SIGKILL whatever is still in the task cgroup (does not wait)."""
        if self.cgroup is not None:
            self.cgroup.kill(timeout_s=0)

    def finish(self) -> None:
        """The tree has been stopped: remove the cgroup and the record (the record stays if the cgroup does)."""
        self._close_fds()
        if self.cgroup is not None and not (self.cgroup.kill() and self.cgroup.remove()):
            log.warning("%r is not empty after the run; keeping its record for the next run to reap", self.cgroup)
            return
        self.record.discard()
        _watchdog.unwatch(self.record.path)

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def prepare(
    *,
    workdir: Path,
    bwrap: str | None,
    command: str,
    env: Mapping[str, str],
    limits: Limits,
    cgroups: CgroupSupport | None,
    network: bool,
    readable: Sequence[Path],
    hidden: Sequence[Path],
) -> Launch:
    """Create the task cgroup and run record for ``command`` and build how to start it.

    A cgroup that cannot be made (the machine ran out of them, a permission changed since the probe) is logged
    and the command runs with the rlimit fallback rather than not at all.
    """
    if bwrap is None:
        argv = ["/bin/sh", "-c", command]
    else:
        tmp_bytes = None if limits.memory_mb is None else limits.memory_mb * _MIB
        argv = _bwrap_argv(
            bwrap, workdir, command, network=network, readable=readable, hidden=hidden, tmp_bytes=tmp_bytes
        )
    # The order is what makes a kill of the engine at any point recoverable: the watchdog learns of the record
    # before it exists, the record names the cgroups before they exist, and the child joins them before exec.
    record = _leftovers.RunRecord(workdir)
    record.cgroups = [str(path) for path in TaskCgroup.paths(cgroups, record.marker[:16])] if cgroups else []
    _watchdog.watch(record.path)
    cgroup = None
    try:
        _leftovers.begin(record)
        if cgroups is not None:
            try:
                cgroup = TaskCgroup.create(
                    cgroups,
                    record.marker[:16],
                    memory_bytes=None if limits.memory_mb is None else limits.memory_mb * _MIB,
                    max_pids=limits.processes,
                )
            except OSError as exc:
                log.warning("could not create a task cgroup (%s); falling back to rlimits only", exc)
        fds = cgroup.open_for_joining() if cgroup is not None else []
    except OSError:
        record.discard()
        _watchdog.unwatch(record.path)
        if cgroup is not None:
            cgroup.remove()
        raise
    counted = cgroup is not None and cgroups is not None and cgroups.limits("pids")
    preexec = child_setup(limits.rlimits(count_processes=not counted), fds)
    full_env = {**env, _leftovers.MARKER_ENV: record.marker}
    return Launch(argv=argv, env=full_env, preexec=preexec, record=record, cgroup=cgroup, _fds=fds)
