"""One agent at work: a header (agent, task, state, elapsed, LLM tokens and cost, progress) and a log of its output.

Output is coalesced: lines are buffered and written at most once a frame, the log keeps a bounded number of
lines, and it follows new output only while the user has not scrolled up.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, RichLog

from tui.widgets.metrics_view import MetricsView
from tui.widgets.status import UsageLedger, UsageTotals, elapsed, icon, usage_text

MAX_LINES = 2_000
MAX_LINES_PER_FRAME = 100  # at 20 frames a second: 2,000 lines a second rendered, the rest folded


class AgentPane(Vertical):
    """The live view of one running task."""

    DEFAULT_CLASSES = "agent-pane"
    # Tokens and cost keep their width: when the header is short of room, the title gives way, not the cost.
    DEFAULT_CSS = """
    AgentPane .pane-usage { width: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, workflow: str, task: str, agent: str) -> None:
        super().__init__(id=f"pane-{_safe(workflow)}-{_safe(task)}")
        self.workflow = workflow
        self.task_key = task
        self.agent = agent
        self.state = "running"
        self.started = datetime.now(UTC)
        self.finished: datetime | None = None
        self.progress: float | None = None
        self.attempt = 1
        self._buffer: list[Text] = []
        self.lines_seen = 0
        self.folded = 0
        self.usage: UsageTotals | None = None
        self._ledger: UsageLedger | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="pane-header"):
            yield Label(self._title(), classes="pane-title")
            yield Label("", classes="pane-usage")
            yield ProgressBar(total=1.0, show_eta=False, classes="pane-progress")
        yield RichLog(max_lines=MAX_LINES, wrap=False, markup=False, auto_scroll=True, classes="pane-log")

    def _title(self) -> Text:
        took = elapsed(self.started, self.finished)
        retry = f" · attempt {self.attempt}" if self.attempt > 1 else ""
        return Text.from_markup(
            f"{icon(self.state)} [b]{self.agent}[/] · {self.task_key} · {self.state}{retry} · [dim]{took}[/]"
        )

    def _usage_ledger(self) -> UsageLedger | None:
        """The screen's ``llm.usage`` sums: the metrics view keeps them, as it sees every event."""
        if self._ledger is None:
            views = self.screen.query(MetricsView)
            self._ledger = views.first().usage if views else None
        return self._ledger

    def add_line(self, line: str, stream: str = "stdout") -> None:
        self.lines_seen += 1
        self._buffer.append(Text(line, style="red" if stream == "stderr" else ""))
        if len(self._buffer) > MAX_LINES:
            del self._buffer[: len(self._buffer) - MAX_LINES]

    def set_state(self, state: str, attempt: int | None = None) -> None:
        self.state = state
        if attempt is not None:
            self.attempt = attempt
        if state in ("completed", "failed", "cancelled", "skipped"):
            self.finished = datetime.now(UTC)
            self.add_class("finished")

    def set_progress(self, value: float) -> None:
        self.progress = value

    def render_frame(self) -> None:
        """Write what arrived since the last frame (called by the grid's frame timer)."""
        if not self.is_mounted:
            return
        ledger = self._usage_ledger()
        if ledger is not None:
            self.usage = ledger.task(self.workflow, self.task_key)
        self.query_one(".pane-title", Label).update(self._title())
        if self.usage is not None:
            self.query_one(".pane-usage", Label).update(usage_text(self.usage))
        if self.progress is not None:
            self.query_one(ProgressBar).update(progress=self.progress)
        if self._buffer:
            log = self.query_one(RichLog)
            at_end = log.scroll_offset.y >= log.max_scroll_y - 1
            lines, self._buffer = self._buffer, []
            if len(lines) > MAX_LINES_PER_FRAME:
                # A flood: rendering every line would stall the UI. Show that lines were folded, then the newest;
                # every line is still in the event log and the database.
                skipped = len(lines) - MAX_LINES_PER_FRAME
                self.folded += skipped
                lines = [
                    Text(f"… {skipped} lines folded (all are in the event table)", style="dim italic"),
                    *lines[-MAX_LINES_PER_FRAME:],
                ]
            for text in lines:
                log.write(text, scroll_end=at_end)


def _safe(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value)
