"""One run of a local sandbox command: the subprocess protocol that streams its output and notices its exit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import psutil

from engine.sandbox._lines import LineSplitter
from engine.sandbox.base import OutputCallback


class _RunProtocol(asyncio.SubprocessProtocol):
    """Receives one run's output as it arrives and notices the exit of the command, independently of its pipes.

    ``asyncio.subprocess.Process.wait()`` only returns once the pipes are closed too, which a background process
    holding stdout can delay forever; ``process_exited`` here fires when the main process ends.
    """

    _STREAMS: ClassVar[dict[int, str]] = {1: "stdout", 2: "stderr"}

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_output: OutputCallback | None, redact: Sequence[str]
    ) -> None:
        self._on_output = on_output
        self._splitters = {fd: LineSplitter(redact) for fd in self._STREAMS}
        self._open = set(self._STREAMS)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        #: Set when ``on_output`` raised; the run then stops the command and raises that error.
        self.failed: asyncio.Future[BaseException] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        self._deliver(fd, self._splitters[fd].feed(chunk))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd not in self._open:
            return
        self._deliver(fd, self._splitters[fd].flush())
        self._open.discard(fd)
        if not self._open and not self.drained.done():
            self.drained.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def _deliver(self, fd: int, lines: list[str]) -> None:
        if self._on_output is None or self.failed.done():
            return
        stream = self._STREAMS[fd]
        for line in lines:
            try:
                self._on_output(stream, line)
            except Exception as exc:  # the callback is the caller's code: report it from run(), not the loop
                self.failed.set_result(exc)
                return


@dataclass(eq=False)
class _Run:
    """The state of the command that is running now."""

    transport: asyncio.SubprocessTransport
    protocol: _RunProtocol
    #: The process we started (the shell, or the outer bwrap); ``None`` if it was gone before we could look.
    root: psutil.Process | None
    pgid: int
    #: Every process of the tree seen alive so far, by pid.
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    #: Flips (is set and replaced) whenever the run is paused or resumed, waking the timeout clock.
    pause_flip: asyncio.Event = field(default_factory=asyncio.Event)
    paused: bool = False
    stop_requested: bool = False
    stopping: asyncio.Task[None] | None = None


def _flip(run: _Run) -> None:
    """Wake whoever waits for the run's pause state to change."""
    flip, run.pause_flip = run.pause_flip, asyncio.Event()
    flip.set()


def _exit_status(returncode: int | None) -> int | None:
    """A shell-style exit status: death by signal N (``-N`` from Popen) becomes ``128 + N``, as bwrap reports it."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode
