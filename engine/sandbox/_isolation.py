"""Isolation for the local sandbox: resource limits for the child, and the bubblewrap command line."""

from __future__ import annotations

import functools
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_MIB = 1024 * 1024


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
    """

    cpu_seconds: int | None = None
    address_space_mb: int | None = 4096
    file_size_mb: int | None = 1024
    open_files: int | None = 1024

    def rlimits(self) -> list[tuple[int, tuple[int, int]]]:
        """``(resource, (soft, hard))`` pairs to apply, already lowered to what this process may set."""
        wanted = (
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_AS, None if self.address_space_mb is None else self.address_space_mb * _MIB),
            (resource.RLIMIT_FSIZE, None if self.file_size_mb is None else self.file_size_mb * _MIB),
            (resource.RLIMIT_NOFILE, self.open_files),
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


def _rlimit_setter(limits: Limits) -> Callable[[], None] | None:
    """A ``preexec_fn`` that applies ``limits``; everything is computed beforehand so the child only calls C."""
    pairs = limits.rlimits()
    if not pairs:
        return None

    def apply_limits() -> None:
        for which, pair in pairs:
            resource.setrlimit(which, pair)

    return apply_limits


def _bwrap_argv(bwrap: str, workdir: Path, command: str, *, network: bool, readable: Sequence[Path] = ()) -> list[str]:
    """The bubblewrap command line that runs ``command`` isolated, with ``workdir`` the only writable place."""
    where = str(workdir)
    # Upstream working directories may sit under /tmp too: bind them read-only over the private /tmp.
    shared = [arg for path in readable for arg in ("--ro-bind-try", str(path), str(path))]
    return [
        bwrap,
        *("--ro-bind", "/", "/"),
        *("--dev", "/dev"),
        *("--proc", "/proc"),
        # The private /tmp comes before the workdir bind, so a workdir under /tmp is mounted on top of it.
        *("--tmpfs", "/tmp"),
        *shared,
        *("--bind", where, where),
        "--unshare-all",
        *(["--share-net"] if network else []),
        # If the engine dies, bwrap and everything in the sandbox die with it.
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
            probe = _bwrap_argv(bwrap, Path(workdir).resolve(), "exit 0", network=False)
            done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return f"bwrap cannot create a sandbox here: {detail}"
    return None
