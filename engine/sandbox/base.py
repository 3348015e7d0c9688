"""The sandbox interface: where a task's commands run, how their output streams, and how they are stopped.

Every backend (local processes, later E2B) implements :class:`Sandbox` and passes the shared conformance suite in
``tests/integration/sandbox_conformance.py``. The contract, in short:

- ``run`` executes one shell command (``/bin/sh -c``) in the sandbox's working directory and streams its output
  line by line *as it is produced*, with secret values redacted. One command runs at a time per sandbox.
- The command sees only the variables it is given plus a minimal safe base: the engine's environment (API keys)
  is never inherited.
- ``timeout``, ``kill`` and asyncio cancellation of ``run`` all stop the command's whole process tree: a polite
  SIGTERM, then SIGKILL after a grace period. Nothing is left running.
- ``pause`` freezes the whole tree (no CPU, no output) and ``resume`` thaws it where it stopped.
- The working directory outlives a run, so a task's retries see what earlier attempts left there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from engine.errors import EngineError

#: Which stream a line came from.
Stream = Literal["stdout", "stderr"]

#: Receives each output line as it is produced: ``(stream, line)``, the line without its trailing newline.
OutputCallback = Callable[[str, str], None]
#: Receives output lines in batches, as they arrive: ``(stream, lines)`` (one call per piece read, not per line).
LinesCallback = Callable[[str, list[str]], None]
#: Flow control for output: returns None while the caller keeps up, else an awaitable to wait on before reading on.
OutputBacklog = Callable[[], Awaitable[None] | None]

#: What redacted secrets are replaced with.
REDACTED = "***"


class SandboxError(EngineError):
    """Base class for sandbox errors."""


class SandboxUnavailable(SandboxError):
    """The requested sandbox backend cannot be used here (not installed, not implemented, not configured)."""


class SandboxBusy(SandboxError):
    """``run`` was called while another command is still running in the same sandbox."""


class SandboxClosed(SandboxError):
    """The sandbox was closed; it runs nothing more."""


@dataclass(frozen=True)
class RunResult:
    """How one ``run`` ended.

    Attributes:
        exit_code: The command's exit status (a death by signal N is reported as ``128 + N``, as shells do).
            ``None`` when the sandbox itself stopped the command (timeout, ``kill`` or ``close``).
        timed_out: The command ran longer than its timeout (paused time excluded) and was stopped.
        cancelled: The command was stopped by ``kill`` (or ``close``) before it finished.
        duration_s: Wall-clock seconds from start to the end of the run, paused time included.
    """

    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float

    @property
    def succeeded(self) -> bool:
        """The command finished by itself with exit status 0."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


class Sandbox(ABC):
    """A place to run a task's shell commands, with a working directory that persists across the task's retries.

    Use it as an async context manager, or call :meth:`close` when done. ``close`` stops a running command but
    keeps the working directory: who created it decides when it goes.
    """

    #: The per-task working directory: commands start in it and ``write_file``/``read_file`` paths are under it.
    workdir: Path
    #: Commands run on another machine (E2B): ``pids`` are not this machine's, and ``workdir`` is a path there.
    remote: bool = False
    #: Closing the sandbox once its task is over frees what it costs (a per-task remote sandbox); a local one, or
    #: one shared by several tasks, stays until the workflow ends.
    release_when_done: bool = False

    @abstractmethod
    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        # Part of the contract, not an asyncio.timeout around the call: paused time does not count against it.
        timeout: float | None = None,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        redact: Sequence[str] = (),
        network: bool = False,
        readable: Sequence[Path] = (),
        backlog: OutputBacklog | None = None,
        on_lines: LinesCallback | None = None,
    ) -> RunResult:
        """Run ``command`` with ``/bin/sh -c`` in :attr:`workdir` and wait for it to end.

        Args:
            command: A shell command line.
            on_output: Called with ``(stream, line)`` for every line as the command produces it; a final line
                without a newline is delivered when the stream closes. The relative order of stdout and stderr
                lines is only as good as the two pipes allow.
            timeout: Seconds the command may run (time spent paused does not count). When exceeded, the whole
                process tree is stopped (SIGTERM, then SIGKILL after the grace period) and the result says
                ``timed_out``.
            env: The only variables the command sees, on top of a minimal safe base (``PATH``, ``HOME`` set to
                the working directory, ``LANG``, ``TERM=dumb``, ``PYTHONUNBUFFERED=1``); these win over the base.
            redact: Secret values replaced by ``***`` in every line handed to ``on_output``.
            network: Whether the command may use the network (backends that can isolate it do so otherwise).
            readable: Directories the command may read besides its own (upstream tasks' working directories);
                backends that hide the rest of the filesystem expose these read-only.
            backlog: Flow control: asked after each piece of output is handed to ``on_output``; when it returns an
                awaitable, the backend stops reading the command's output until that completes (the command
                blocks once its pipe is full). Output is then read only as fast as the caller stores it.
            on_lines: Like ``on_output``, with the lines of each piece of output at once (a flood costs one call
                per read, not one per line); when given, ``on_output`` is not called.

        Returns:
            How the command ended.

        Raises:
            SandboxBusy: Another command is running in this sandbox.
            SandboxClosed: The sandbox was closed.
            asyncio.CancelledError: ``run`` was cancelled; the process tree has been stopped before it propagates.
        """

    @abstractmethod
    async def pause(self) -> None:
        """Freeze the running command's whole process tree; its output stops. Idempotent; no-op when idle."""

    @abstractmethod
    async def resume(self) -> None:
        """Thaw a paused command where it stopped. Idempotent; no-op when not paused."""

    @abstractmethod
    async def kill(self) -> None:
        """Stop the running command's whole tree (SIGTERM, SIGKILL after the grace period) and wait until it is gone.

        ``run`` then returns with ``cancelled=True``. Works on a paused command, is idempotent, and does nothing
        when no command runs.
        """

    @abstractmethod
    async def write_file(self, relpath: str, data: bytes | str) -> None:
        """Write a file under :attr:`workdir` (creating parent directories); ``str`` is encoded as UTF-8.

        Raises:
            ValueError: ``relpath`` is absolute or leads outside the working directory.
        """

    @abstractmethod
    async def read_file(self, relpath: str) -> bytes:
        """Read a file under :attr:`workdir`.

        Raises:
            ValueError: ``relpath`` is absolute or leads outside the working directory.
            FileNotFoundError: There is no such file.
        """

    @abstractmethod
    def pids(self) -> list[int]:
        """Live process ids of the current run's tree (empty when idle), for metrics and tests."""

    @property
    @abstractmethod
    def paused(self) -> bool:
        """A command is running and frozen."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """A command is running (paused or not)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop any running command and release the backend's resources. Idempotent; keeps the working directory."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def resolve_inside(workdir: Path, relpath: str) -> Path:
    """The absolute path of ``relpath`` under ``workdir``; refuses paths that lead outside it (``..``, symlinks).

    Raises:
        ValueError: ``relpath`` is absolute or escapes ``workdir``.
    """
    if Path(relpath).is_absolute():
        raise ValueError(f"sandbox paths are relative to the working directory, got absolute path {relpath!r}")
    root = workdir.resolve()
    target = (root / relpath).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError(f"path {relpath!r} leads outside the sandbox working directory {workdir}")
    return target
