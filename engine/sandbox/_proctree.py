"""Finding and signalling every process of a command's tree, wherever it wandered (psutil over ``/proc``).

A tree is the root process, its descendants, every member of its process group (an orphaned background job is
re-parented to init and is no longer a descendant, but stays in the group), and every process seen in an earlier
look that is still alive (a child that called ``setsid`` and lost its parent is neither, but was seen while it
was still a descendant). ``psutil.Process`` objects remember their start time, so a recycled pid is never
mistaken for a process of the tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

import psutil


def is_alive(proc: psutil.Process) -> bool:
    """The process exists, is the same process (not a recycled pid), and is not a zombie."""
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_frozen(proc: psutil.Process) -> bool:
    """The process is stopped by a signal, or no longer alive (a dead process is as quiet as a stopped one), or it
    waits in the kernel for a vfork child that is stopped.

    The last is how ``dash`` (Debian's ``sh``) starts a command: it vforks, and the parent sleeps uninterruptibly
    (state D) until the child execs or exits. With the child stopped the parent cannot run either, and it takes its
    own SIGSTOP only once the child lets it go (on resume); waiting for it to show ``T`` would wait for ever.
    """
    try:
        status = proc.status()
        if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE):
            return True
        return status == psutil.STATUS_DISK_SLEEP and _waits_for_stopped_vfork_child(proc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def _waits_for_stopped_vfork_child(proc: psutil.Process) -> bool:
    try:
        with open(f"/proc/{proc.pid}/wchan") as wchan_file:
            wchan = wchan_file.read()
    except OSError:
        return False
    # The vfork wait shows as itself, or as kernel_clone where the compiler inlined it.
    if "vfork" not in wchan and "clone" not in wchan:
        return False
    for child in proc.children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if child.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                return True
    return False


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes whose process group is ``pgid`` (one scan over all pids)."""
    members: list[psutil.Process] = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """All live descendants of ``proc`` (empty when ``proc`` is gone)."""
    try:
        if not proc.is_running():
            return []
        return list(proc.children(recursive=True))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def children(proc: psutil.Process) -> list[psutil.Process]:
    """The live direct children of ``proc`` (empty when ``proc`` is gone)."""
    try:
        if not proc.is_running():
            return []
        return list(proc.children())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def send(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    """Send ``sig`` to each process that is still the process we saw (psutil checks for pid reuse)."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            proc.send_signal(sig)


def send_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a whole process group at once; the kernel delivers it atomically, even to a forking member."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
