"""One run of a local sandbox command: the subprocess protocol that streams its output and notices its exit.

Flow control: output is turned into lines a slice (``SLICE`` bytes) at a time, and after each slice the protocol
asks the caller's ``backlog``; while the caller is behind, the rest of what was read stays raw bytes here and both
pipes are left unread (``pause_reading``), so the command blocks on a full pipe instead of the engine buffering
what it prints without bound. What is held per command is at most one read of raw bytes plus one slice of lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import psutil

from engine.sandbox._lines import LineSplitter
from engine.sandbox.base import LinesCallback, OutputBacklog, OutputCallback

#: Raw output turned into lines between two flow-control checks (a pipe read can be 256 KB: as short lines, that
#: is megabytes of Python strings, which must not all be made before the caller can say "stop").
SLICE = 16 * 1024


class _RunProtocol(asyncio.SubprocessProtocol):
    """Receives one run's output as it arrives and notices the exit of the command, independently of its pipes.

    ``asyncio.subprocess.Process.wait()`` only returns once the pipes are closed too, which a background process
    holding stdout can delay forever; ``process_exited`` here fires when the main process ends.
    """

    _STREAMS: ClassVar[dict[int, str]] = {1: "stdout", 2: "stderr"}

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: OutputCallback | None,
        redact: Sequence[str],
        backlog: OutputBacklog | None = None,
        on_lines: LinesCallback | None = None,
    ) -> None:
        self._loop = loop
        self._on_output = on_output
        self._on_lines = on_lines
        self._backlog = backlog
        self._transport: asyncio.SubprocessTransport | None = None
        #: Set while reading is paused because the caller is behind on storing output.
        self.held: asyncio.Future[None] | None = None
        self._splitters = {fd: LineSplitter(redact) for fd in self._STREAMS}
        self._raw = {fd: bytearray() for fd in self._STREAMS}  # read, not yet turned into lines
        self._eof: set[int] = set()
        self._open = set(self._STREAMS)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        #: Set when ``on_output`` raised; the run then stops the command and raises that error.
        self.failed: asyncio.Future[BaseException] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a SubprocessTransport for this protocol

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._raw[fd] += data.encode() if isinstance(data, str) else data
        self._pump()

    def _pump(self) -> None:
        """Turn raw output into delivered lines while the caller keeps up; close streams whose end was read."""
        for fd in self._STREAMS:
            raw = self._raw[fd]
            while raw and self.held is None:
                piece = bytes(raw[:SLICE])
                del raw[:SLICE]
                self._deliver(fd, self._splitters[fd].feed(piece))
                if self._backlog is not None:
                    waiting = self._backlog()
                    if waiting is not None:
                        self._hold(waiting)
            if not raw and fd in self._eof and fd in self._open:
                self._deliver(fd, self._splitters[fd].flush())
                self._open.discard(fd)
        if not self._open and not self.drained.done():
            self.drained.set_result(None)

    def _pipes(self) -> list[asyncio.ReadTransport]:
        if self._transport is None:
            return []
        pipes = (self._transport.get_pipe_transport(fd) for fd in self._open)
        return [pipe for pipe in pipes if isinstance(pipe, asyncio.ReadTransport)]

    def _hold(self, waiting: Awaitable[None]) -> None:
        """Stop reading until ``waiting`` completes (the caller has stored what it was given)."""
        self.held = self._loop.create_future()
        for pipe in self._pipes():
            pipe.pause_reading()
        self._loop.create_task(self._release_after(waiting))

    async def _release_after(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except BaseException:  # cancelled or failed: reading on is the safe side (nothing is lost, memory is)
            pass
        finally:
            held, self.held = self.held, None
            self._pump()  # what was read before the hold first
            if self.held is None:
                for pipe in self._pipes():
                    if not pipe.is_closing():
                        pipe.resume_reading()
            if held is not None and not held.done():
                held.set_result(None)

    async def wait_drained(self, idle_timeout: float) -> bool:
        """Wait until both pipes are closed. Time spent held by flow control does not count against
        ``idle_timeout`` (the output is there, we are just storing it). Returns False on a timeout."""
        idle = 0.0
        while not self.drained.done():
            if self.held is not None:
                await asyncio.wait({self.held, self.drained}, return_when=asyncio.FIRST_COMPLETED)
                continue
            began = self._loop.time()
            await asyncio.wait({self.drained}, timeout=0.1)
            idle += self._loop.time() - began
            if idle >= idle_timeout and not self.drained.done():
                return False
        return True

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._eof.add(fd)
        self._pump()  # delivers the last line once everything read before it is

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def _deliver(self, fd: int, lines: list[str]) -> None:
        if not lines or self.failed.done():
            return
        stream = self._STREAMS[fd]
        if self._on_lines is not None:
            try:
                self._on_lines(stream, lines)
            except Exception as exc:  # the callback is the caller's code: report it from run(), not the loop
                self.failed.set_result(exc)
            return
        if self._on_output is None:
            return
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
