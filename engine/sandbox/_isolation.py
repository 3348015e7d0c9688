"""Isolation for the local sandbox: what the child does before ``exec``, resource limits, and the bubblewrap
command line (which hides the engine's own files from the command)."""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

_MIB = 1024 * 1024

#: prctl(2) option: the signal the kernel sends us when the thread that forked us ends.
_PR_SET_PDEATHSIG = 1

#: Looked up here, not in the child: between fork and exec the child should only call into C.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


@dataclass(frozen=True)
class Limits:
    """Resource limits for every process of a local command (``None`` leaves a limit as the engine has it).

    Each is set as both soft and hard limit in the child before ``exec``, so the command cannot raise it again.
    A value above the engine's own hard limit is lowered to it (only root may raise a hard limit).

    Attributes:
        cpu_seconds: CPU time per process (RLIMIT_CPU); the kernel kills a process that uses more.
        address_space_mb: Virtual memory per process (RLIMIT_AS). Runtimes that reserve large address ranges up
            front (the JVM, Go, some JavaScript engines) may need more than the default.
        file_size_mb: Largest file a process may write (RLIMIT_FSIZE).
        open_files: Open file descriptors per process (RLIMIT_NOFILE).
        memory_mb: RAM of the whole task, all its processes together (and its files in a private ``/tmp``):
            a cgroup's ``memory.max`` where one can be made (``cgroup_support()``); the kernel's OOM killer
            ends a process of the task that needs more. Also the size of bubblewrap's private ``/tmp``.
        processes: Processes (and threads) the task may have at once: a cgroup's ``pids.max``. Without a
            cgroup, RLIMIT_NPROC set to the user's current count plus this many - the kernel counts all of the
            user's processes against it and ignores it for root.
    """

    cpu_seconds: int | None = None
    address_space_mb: int | None = 4096
    file_size_mb: int | None = 1024
    open_files: int | None = 1024
    memory_mb: int | None = 4096
    processes: int | None = 1024

    def rlimits(self, *, count_processes: bool = False) -> list[tuple[int, tuple[int, int]]]:
        """``(resource, (soft, hard))`` pairs to apply, already lowered to what this process may set.

        ``count_processes`` adds RLIMIT_NPROC (the fallback for :attr:`processes` when no cgroup limits them);
        not for root, whom the kernel exempts anyway.
        """
        nproc = None
        if count_processes and self.processes is not None and os.getuid() != 0:
            nproc = _user_tasks() + self.processes
        wanted = (
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_AS, None if self.address_space_mb is None else self.address_space_mb * _MIB),
            (resource.RLIMIT_FSIZE, None if self.file_size_mb is None else self.file_size_mb * _MIB),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_NPROC, nproc),
        )
        pairs: list[tuple[int, tuple[int, int]]] = []
        for which, value in wanted:
            if value is None:
                continue
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            pairs.append((which, (value, value)))
        return pairs


def _user_tasks() -> int:
    """How many processes and threads this user has now: what the kernel counts against RLIMIT_NPROC."""
    uid = os.getuid()
    count = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids, threads = proc.info["uids"], proc.info["num_threads"]
        if uids is not None and uids.real == uid:
            count += threads or 1
    return count


def child_setup(rlimits: list[tuple[int, tuple[int, int]]], cgroup_fds: Sequence[int]) -> Callable[[], None]:
    """The ``preexec_fn`` of a command: runs in the child after ``setsid`` and before ``exec``.

    1. Die with the engine: PR_SET_PDEATHSIG(SIGKILL) survives ``exec`` (bwrap is not setuid), so the command
       (or the outer bwrap) is killed when the engine's thread that started it ends - from before its first
       instruction, where bwrap's own ``--die-with-parent`` comes only after its setup (a task started 30-100 ms
       before an engine SIGKILL outlived it). If the engine died before the prctl, our parent is someone else
       already: die now.
    2. Join the task's cgroups (write ``0`` to each ``cgroup.procs``), before the command can fork anything.
    3. Apply the rlimits.

    Everything is computed beforehand; the child only makes system calls.
    """
    parent = os.getpid()
    fds = tuple(cgroup_fds)

    def setup() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        for fd in fds:
            os.write(fd, b"0")
        for which, pair in rlimits:
            resource.setrlimit(which, pair)

    return setup


def installation_under_tmp() -> list[Path]:
    """This interpreter's installation (the virtualenv and the Python it is built on) where it lies under ``/tmp``:
    the sandbox's private ``/tmp`` would hide it, and with it the tools installed beside agentdeck (a checkout
    under ``/tmp`` would lose ``.venv/bin/ruff`` and ``python``). These are bound back read-only."""
    tmp = Path("/tmp")
    found = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
    return sorted(p for p in found if p.is_relative_to(tmp) and p != tmp and p.exists())


def _masks(hidden: Sequence[Path], exposed: Sequence[Path] = ()) -> tuple[list[str], list[str]]:
    """bwrap arguments hiding each path of ``hidden``, and the remounts that must follow the binds.

    A directory gets an empty tmpfs over it (made read-only once the working directories are bound back into
    it), anything else ``/dev/null``. Paths that do not exist, lie under ``/tmp`` (private already) or under
    another hidden directory need nothing — except under ``exposed`` directories bound back from ``/tmp``.
    """
    wanted = sorted({Path(os.path.abspath(path)).resolve() for path in hidden}, key=lambda p: len(p.parts))
    tmp = Path("/tmp")
    covered: list[Path] = [tmp]
    mask: list[str] = []
    remount: list[str] = []
    for path in wanted:
        if path == Path("/"):
            raise ValueError("cannot hide / from a sandbox")
        in_exposed = any(path.is_relative_to(shown) for shown in exposed)  # bound back over the private /tmp
        if not path.exists() or (any(path.is_relative_to(done) for done in covered) and not in_exposed):
            continue
        if path.is_dir():
            mask += ["--perms", "0755", "--size", str(64 * 1024), "--tmpfs", str(path)]
            remount += ["--remount-ro", str(path)]
            covered.append(path)
        else:
            mask += ["--ro-bind", "/dev/null", str(path)]
    return mask, remount


def _bwrap_argv(
    bwrap: str,
    workdir: Path,
    command: str,
    *,
    network: bool,
    readable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    tmp_bytes: int | None = None,
    installed: Sequence[Path] | None = None,
) -> list[str]:
    """The bubblewrap command line that runs ``command`` isolated, with ``workdir`` the only writable place.

    ``hidden`` paths (the engine's database, control socket and every task's working directory) are masked;
    ``workdir`` and the ``readable`` upstream directories are bound back on top, so a task sees its own
    directory and its inputs but neither its siblings nor the engine.
    """
    where = str(workdir)
    installed = installation_under_tmp() if installed is None else installed
    mask, remount = _masks(hidden, installed)
    # The interpreter's installation, when under /tmp, is bound back read-only over the private /tmp (the hidden
    # paths are masked after it, so one inside it stays hidden).
    tools = [arg for path in installed for arg in ("--ro-bind", str(path), str(path))]
    # Upstream working directories may sit under /tmp or a hidden directory: bind them read-only on top.
    shared = [arg for path in readable for arg in ("--ro-bind-try", str(path), str(path))]
    return [
        bwrap,
        *("--ro-bind", "/", "/"),
        *("--dev", "/dev"),
        *("--proc", "/proc"),
        # The private /tmp comes before the workdir bind, so a workdir under /tmp is mounted on top of it.
        # Sized, or a task could fill the host's RAM through it.
        *(["--size", str(tmp_bytes)] if tmp_bytes is not None else []),
        *("--tmpfs", "/tmp"),
        *tools,
        *mask,
        *shared,
        *("--bind", where, where),
        *remount,
        "--unshare-all",
        *(["--share-net"] if network else []),
        # If the engine dies, bwrap and everything in the sandbox die with it (the preexec's PDEATHSIG covers the
        # time before bwrap gets to set this).
        "--die-with-parent",
        *("--chdir", where),
        "--",
        *("/bin/sh", "-c", command),
    ]


@functools.cache
def bwrap_unavailable_reason() -> str | None:
    """Why bubblewrap cannot be used here, or ``None`` when it can (checked once per process, by running it)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not on PATH (install the 'bubblewrap' package)"
    try:
        with tempfile.TemporaryDirectory(prefix="agentdeck-bwrap-probe-") as workdir:
            # A sized /tmp as in a real run: a bwrap too old for --size is found out here, not by a task.
            probe = _bwrap_argv(bwrap, Path(workdir).resolve(), "exit 0", network=False, tmp_bytes=_MIB)
            done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return f"bwrap cannot create a sandbox here: {detail}"
    return None
