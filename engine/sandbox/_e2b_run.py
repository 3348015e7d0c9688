"""One run of a command in an E2B sandbox: its output splitters, the stream it is attached to, and how it ended.

Split out of ``engine.sandbox.e2b``: what a run holds (:class:`E2BRun`) and how envd's end event becomes the shell's
exit status (:func:`exit_status`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.sandbox._lines import LineSplitter
from engine.sandbox.base import LinesCallback, OutputBacklog, OutputCallback

if TYPE_CHECKING:
    from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

#: Go's names for Linux signals (``signal: killed``: envd reports a death by signal with Go's ``ProcessState``).
_GO_SIGNALS = {
    "hangup": 1, "interrupt": 2, "quit": 3, "illegal instruction": 4, "trace/breakpoint trap": 5, "aborted": 6,
    "bus error": 7, "floating point exception": 8, "killed": 9, "user defined signal 1": 10,
    "segmentation fault": 11, "user defined signal 2": 12, "broken pipe": 13, "alarm clock": 14, "terminated": 15,
    "stack fault": 16, "child exited": 17, "continued": 18, "stopped (signal)": 19, "stopped": 20,
    "stopped (tty input)": 21, "stopped (tty output)": 22, "urgent I/O condition": 23, "CPU time limit exceeded": 24,
    "file size limit exceeded": 25, "virtual timer expired": 26, "profiling timer expired": 27,
    "window changed": 28, "I/O possible": 29, "power failure": 30, "bad system call": 31,
}  # fmt: skip


def exit_status(exit_code: int, error: str | None) -> int:
    """The shell's exit status from envd's end event: ``128 + N`` for a death by signal N."""
    if exit_code == -1 and error and error.startswith("signal: "):
        name = error.removeprefix("signal: ").removesuffix(" (core dumped)").strip()
        number = _GO_SIGNALS.get(name)
        if number is not None:
            return 128 + number
    return exit_code


class E2BRun:
    """What one ``run`` holds while its command runs."""

    def __init__(self, on_output: OutputCallback | None, on_lines: LinesCallback | None, redact: Sequence[str]):
        self.on_output = on_output
        self.on_lines = on_lines
        self.splitters = {"stdout": LineSplitter(redact), "stderr": LineSplitter(redact)}
        self.handle: AsyncCommandHandle[Any] | None = None
        self.pid: int | None = None
        self.stopped_by: str | None = None  # "kill" or "timeout"
        self.failure: BaseException | None = None  # an output callback raised
        self.last_output = time.monotonic()
        self._changed: asyncio.Future[None] | None = None
        self.stopping: asyncio.Future[None] | None = None  # the tree being stopped after a callback broke
        self.ended = asyncio.Event()  # run() is over, its tree stopped
        self.backlog: OutputBacklog | None = None
        self.detached = False  # the output stream was let go on purpose (the sandbox itself is being paused)

    def next_change(self) -> asyncio.Future[None]:
        """A future that completes at the next :meth:`changed` (pause, resume, stream swapped)."""
        self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def changed(self) -> None:
        """Wake the wait for the command's end: the clock or the stream changed."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def deliver(self, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        if self.on_lines is not None:
            self.on_lines(stream, lines)
        elif self.on_output is not None:
            for line in lines:
                self.on_output(stream, line)
