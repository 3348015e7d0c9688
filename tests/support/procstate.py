"""Whether a sandboxed process is frozen, as a person reading /proc would judge it (for pause tests)."""

from __future__ import annotations

from pathlib import Path

import psutil


def frozen(proc: psutil.Process) -> bool:
    """Stopped (T in /proc), or a shell in uninterruptible sleep waiting for a vfork child that is stopped itself:
    dash starts commands with vfork, and its parent cannot run until that child execs, so it is frozen as well (it
    takes its own SIGSTOP when the child lets it go, on resume)."""
    state = proc.status()
    if state == psutil.STATUS_STOPPED:
        return True
    if state != psutil.STATUS_DISK_SLEEP:
        return False
    wchan = Path(f"/proc/{proc.pid}/wchan").read_text()  # the vfork wait shows as itself or as kernel_clone
    waiting_for_vfork = "vfork" in wchan or "clone" in wchan
    return waiting_for_vfork and any(child.status() == psutil.STATUS_STOPPED for child in proc.children())
