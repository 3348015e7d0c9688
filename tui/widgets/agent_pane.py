"""One agent at work: a header (task, agent, state, elapsed, LLM tokens and cost, progress) and a log of its output.

Output is coalesced: lines are buffered as they arrive and written to the log in one write, at most once a frame
(``PaneLog``, whatever the number of lines or events). A flood beyond ``MAX_LINES_PER_WRITE`` is folded (every
line is still in the event table). The log keeps a bounded number of lines and follows new output only while the
user has not scrolled up. The header repaints only when what it shows changes, and never asks for a layout
(``PaneHeader``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from tui.status import UsageLedger, UsageTotals, elapsed, icon, usage_text
from tui.widgets.pane_header import PaneHeader
from tui.widgets.pane_log import NOTE, STDERR, STDOUT, PaneLog

MAX_LINES = 2_000
_numbers = itertools.count(1)
MAX_LINES_PER_WRITE = 500  # per write (a log keeps plain strings and paints only the rows shown); more is folded


class AgentPane(Vertical):
    """The live view of one running task."""

    DEFAULT_CLASSES = "agent-pane"

    def __init__(self, workflow: str, task: str, agent: str, usage: UsageLedger | None = None) -> None:
        # Numbered: a task started again while its old pane is still being removed gets a pane of its own (the
        # same id twice is an error in Textual).
        super().__init__(id=f"pane-{_safe(workflow)}-{_safe(task)}-{next(_numbers)}")
        self.workflow = workflow
        self.task_key = task
        self.agent = agent
        self.state = "running"
        self.started = datetime.now(UTC)
        self.finished: datetime | None = None
        #: Where a running task's clock stops (None: now); a replay shows the recorded time of its moment.
        self.clock: Callable[[], datetime | None] | None = None
        self.progress: float | None = None
        self.attempt = 1
        self.worker: str | None = None  # the worker running its command (``sandbox: worker``), as last heard
        self._buffer: list[tuple[str, int]] = []  # (line, STDOUT or STDERR), not yet written
        self._dropped = 0  # lines dropped from the buffer since the last write
        self.lines_seen = 0
        self.folded = 0
        self.writes = 0  # log writes so far: at most one a frame
        self.written_frame = 0  # the grid's frame number of the last write (panes take turns when many are busy)
        self.usage: UsageTotals | None = None
        self._ledger = usage  # the screen's LLM usage sums (tokens and cost in the header)
        self.header = PaneHeader(classes="pane-header")
        self.log_view = PaneLog(max_lines=MAX_LINES)

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.log_view

    def on_mount(self) -> None:
        self.show_header()

    def _title(self) -> Text:
        took = elapsed(self.started, self.finished or (self.clock() if self.clock is not None else None))
        retry = f" · attempt {self.attempt}" if self.attempt > 1 else ""
        where = f" · [dim]on {escape(self.worker)}[/]" if self.worker else ""
        return Text.from_markup(
            f"{icon(self.state)} [b]{self.task_key}[/] · {self.agent} · {self.state}{retry} · [dim]{took}[/]{where}"
        )

    def header_text(self) -> str:
        """The header as plain text: title, tokens and cost, progress."""
        return self.header.text()

    def add_lines(self, lines: list[str], stream: str = "stdout") -> None:
        """Lines of one stream (a ``task.output`` chunk); they reach the screen with the next frame."""
        self.lines_seen += len(lines)
        kind = STDERR if stream == "stderr" else STDOUT
        self._buffer.extend((line, kind) for line in lines)
        if len(self._buffer) > MAX_LINES:  # more than the log keeps: the oldest would scroll out unseen anyway
            self._dropped += len(self._buffer) - MAX_LINES
            del self._buffer[: len(self._buffer) - MAX_LINES]

    def add_line(self, line: str, stream: str = "stdout") -> None:
        self.add_lines([line], stream)

    def set_state(self, state: str, attempt: int | None = None, at: datetime | None = None) -> None:
        """The task's state after an event, ``at`` its time: the pane's clock runs from the attempt's start to its
        end as the engine recorded them (as the tree's does), not from when this dashboard heard of them."""
        self.state = state
        if attempt is not None:
            self.attempt = attempt
        if state == "running" and attempt is not None and at is not None:
            self.started, self.finished = at, None
        if state == "running" and attempt is not None and attempt > 1:
            self.progress = None  # a new attempt starts from nothing, not from where the last one stopped
        if state == "completed" and self.progress is not None:
            self.progress = 1.0  # done is 100 %, whatever the last progress line said
        if state in ("completed", "failed", "cancelled", "skipped"):
            self.finished = at or datetime.now(UTC)
            self.add_class("finished")

    def reset(self, task: str | None = None, agent: str | None = None) -> None:
        """Empty, as if just opened — for ``task`` of ``agent`` if given (a replay reuses its panes at another
        moment, for the same task or another: mounting new ones lays the whole screen out again). The widget id
        keeps the first task's name: it only has to be unique."""
        if task is not None:
            self.task_key, self.agent = task, agent or self.agent
            self.remove_class("-chosen")
        self.state, self.attempt, self.progress, self.finished = "running", 1, None, None
        self.worker = None
        self.started = datetime.now(UTC)
        self._buffer, self._dropped, self.lines_seen, self.folded = [], 0, 0, 0
        self.remove_class("finished")
        self.log_view.clear()

    def set_progress(self, value: float) -> None:
        self.progress = value

    def render_frame(self) -> None:
        """Show what arrived since the last frame: the header, and the lines in one write."""
        self.show_header()
        self.write_output()

    def has_output(self) -> bool:
        """Lines arrived that are not written yet."""
        return bool(self._buffer)

    def write_output(self) -> None:
        """Write the lines that arrived, in one write (the grid calls this at most once a frame)."""
        if self._buffer and self.is_mounted:
            self._write(self._buffer)
            self._buffer = []

    def show_header(self) -> None:
        """Title, tokens and cost, progress as they are now (repainted only if they changed)."""
        if not self.is_mounted:
            return
        ledger = self._ledger
        if ledger is not None:
            self.usage = ledger.task(self.workflow, self.task_key)
        usage = usage_text(self.usage) if self.usage is not None else ""
        self.header.show(self._title(), usage, self.progress)

    def _write(self, lines: list[tuple[str, int]]) -> None:
        """One write of all the lines (a flood folded to the newest ``MAX_LINES_PER_WRITE``)."""
        if len(lines) > MAX_LINES_PER_WRITE or self._dropped:
            # A flood: more than a pane can usefully show at once. Say that lines were folded, then the newest;
            # every line is still in the event log and the database.
            skipped = max(0, len(lines) - MAX_LINES_PER_WRITE) + self._dropped
            self.folded += skipped
            self._dropped = 0
            lines = [(f"… {skipped} lines folded (all are in the event table)", NOTE), *lines[-MAX_LINES_PER_WRITE:]]
        self.log_view.write_kinds(lines)
        self.writes += 1


def _safe(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value)
