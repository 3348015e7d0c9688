"""The task detail (``Enter`` on a task in the tree): what the task is and did, all in one place.

The header says its state, agent, attempts and timings. ``Output`` shows every attempt's output from the event table
with a rule between attempts saying how each ended (so a finished task's output is here, not only in the event
log), and keeps following while the task runs. ``Data`` shows the error, the input and the output as JSON; ``Nodes``
a graph task's node executions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.json import JSON
from rich.rule import Rule
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.signal import Signal
from textual.widgets import DataTable, Footer, RichLog, Static, TabbedContent, TabPane

from db.models import Event, EventType
from db.stores import Stores
from engine.task_detail import Attempt, Attempts, TaskDetail, load_task_detail
from tui.status import icon

#: Events after which the task's row (state, attempts, output, timings) is read again.
_ROW_CHANGES = {
    EventType.TASK_STARTED,
    EventType.TASK_RETRYING,
    EventType.TASK_COMPLETED,
    EventType.TASK_FAILED,
    EventType.TASK_CANCELLED,
    EventType.TASK_SKIPPED,
    EventType.TASK_PAUSED,
    EventType.TASK_RESUMED,
}
_OUTCOME_STYLES = {"completed": "green3", "failed": "red", "failed, retried": "dark_orange", "cancelled": "magenta"}


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%H:%M:%S") if moment else "—"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


def attempt_rule(attempt: Attempt) -> Rule:
    """The line above an attempt's output: which attempt and when it started."""
    number = f"attempt {attempt.number}" if attempt.number else "output (no start recorded)"
    return Rule(f"{number} · started {_clock(attempt.started_at)}", align="left", style="cyan")


def ending_text(attempt: Attempt) -> Text:
    """The line below an attempt's output once it ended: how, after how long, and the error's first line."""
    text = Text(f"└ {attempt.outcome}", style=_OUTCOME_STYLES.get(attempt.outcome, ""))
    if attempt.duration_s is not None:
        text.append(f" after {_seconds(attempt.duration_s)}", style="dim")
    first = attempt.error.strip().splitlines()[0] if attempt.error and attempt.error.strip() else ""
    if first:
        text.append(": " + first)
    return text


def _line(stream: str, line: str) -> Text:
    if stream == "worker":  # which worker took the command: a note, not output
        return Text(f"⇢ {line}", style="dim")
    return Text(line, style="red" if stream == "stderr" else "")


class TaskDetailScreen(ModalScreen[None]):
    """One task's state, attempts with their output, data and graph nodes; follows the task while open."""

    #: Below 30 rows the box gives up its top margin.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("o", "tab('detail-output')", "Output"),
        Binding("d", "tab('detail-data')", "Data"),
        Binding("n", "tab('detail-nodes')", "Nodes"),
    ]

    def __init__(self, stores: Stores, workflow: str, task: str, events: Signal[list[Event]] | None = None) -> None:
        super().__init__()
        self.stores = stores
        self.workflow = workflow
        self.task_key = task
        self.detail: TaskDetail | None = None
        self._events = events
        self._early: list[Event] = []  # live events that arrived before the history was read
        self._ended_shown: set[int] = set()  # attempts (by index) whose ending line is written

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box") as box:
            box.border_title = f"{self.task_key} · {self.workflow}"
            yield Static("reading the task's history…", id="detail-head")
            with TabbedContent(id="detail-tabs", initial="detail-output"):
                with TabPane("Output \\[o]", id="detail-output"):
                    yield RichLog(id="detail-log", wrap=True, markup=False, max_lines=None)
                with TabPane("Data \\[d]", id="detail-data"), VerticalScroll():
                    yield Static(id="detail-json")
                with TabPane("Nodes \\[n]", id="detail-nodes"):
                    yield DataTable(id="detail-node-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        if self._events is not None:
            self._events.subscribe(self, self._live, immediate=True)
        self._load()

    @work(exclusive=True, group="task-detail", exit_on_error=False)
    async def _load(self) -> None:
        detail = await load_task_detail(self.stores, self.workflow, self.task_key)
        if detail is None:
            self.query_one("#detail-head", Static).update(f"{self.task_key}: no such task in {self.workflow}")
            return
        self.detail = detail
        log = self.query_one("#detail-log", RichLog)
        log.clear()
        for index, attempt in enumerate(detail.attempts.attempts):
            self._write_attempt(index, attempt)
        if not detail.attempts.attempts:
            log.write(Text("no output yet: the task has not started", style="dim"))
        early, self._early = self._early, []
        self._live(early)
        self._show_row()
        self._show_nodes()
        self.refresh_bindings()

    def _write_attempt(self, index: int, attempt: Attempt) -> None:
        log = self.query_one("#detail-log", RichLog)
        log.write(attempt_rule(attempt))
        if attempt.dropped:
            log.write(Text(f"… {attempt.dropped} earlier lines not shown (the event log has them)", style="dim"))
        for stream, line in attempt.lines:
            log.write(_line(stream, line))
        self._write_ending(index, attempt)

    def _write_ending(self, index: int, attempt: Attempt) -> None:
        if attempt.outcome != "running" and index not in self._ended_shown:
            self._ended_shown.add(index)
            self.query_one("#detail-log", RichLog).write(ending_text(attempt))

    def _live(self, events: list[Event]) -> None:
        """Events as the dashboard receives them: this task's output and endings are added as they happen."""
        if self.detail is None:
            self._early.extend(e for e in events if e.task == self.task_key and e.workflow == self.workflow)
            return
        attempts: Attempts = self.detail.attempts
        log = self.query_one("#detail-log", RichLog)
        reread = False
        for event in events:
            if event.workflow != self.workflow:
                continue
            lines_before = len(attempts.attempts[-1].lines) if attempts.attempts else 0
            count_before = len(attempts.attempts)
            touched = attempts.add(event)
            if touched is None:
                continue
            index = len(attempts.attempts) - 1
            if len(attempts.attempts) != count_before:  # a new attempt (or output with no start recorded)
                if count_before == 0:
                    log.clear()
                log.write(attempt_rule(touched))
                lines_before = 0
            for stream, line in touched.lines[lines_before:]:
                log.write(_line(stream, line))
            self._write_ending(index, touched)
            reread = reread or event.type in _ROW_CHANGES
        if reread:
            self._reread_row()

    @work(group="task-detail-row", exit_on_error=False)
    async def _reread_row(self) -> None:
        task = await self.stores.tasks.get(self.workflow, self.task_key)
        if task is not None and self.detail is not None:
            self.detail.task = task
            self._show_row()

    def _show_row(self) -> None:
        assert self.detail is not None
        task, kind = self.detail.task, self.detail.agent_kind
        status = task.status.value
        head = Text.from_markup(f"{icon(status)} [b]{status}[/] · agent ")
        head.append(task.agent + (f" ({kind})" if kind else ""))
        head.append(f" · attempt {task.attempts}/{task.max_attempts}")
        if task.depends_on:
            head.append(" · after " + ", ".join(task.depends_on), style="dim")
        head.append("\n")
        took = (task.finished_at or datetime.now(UTC)) - task.started_at if task.started_at else None
        head.append(
            f"started {_clock(task.started_at)} · finished {_clock(task.finished_at)} · "
            f"took {_seconds(took.total_seconds() if took else None)}",
            style="dim",
        )
        if task.error:
            head.append("\n")
            head.append(task.error.strip().splitlines()[0] if task.error.strip() else "", style="bold red")
        self.query_one("#detail-head", Static).update(head)
        self._show_data()

    def _show_data(self) -> None:
        assert self.detail is not None
        task = self.detail.task
        parts: list[Any] = []
        if task.error:
            parts += [Text("error", style="bold red"), Text(task.error), Text("")]
        parts += [Text("input", style="bold"), _json(task.input), Text("")]
        parts += [Text("output", style="bold"), _json(task.output) if task.output is not None else Text("none yet")]
        self.query_one("#detail-json", Static).update(Group(*parts))

    def _show_nodes(self) -> None:
        assert self.detail is not None
        tabs = self.query_one("#detail-tabs", TabbedContent)
        if self.detail.agent_kind != "graph":
            tabs.hide_tab("detail-nodes")
            return
        table = self.query_one("#detail-node-table", DataTable)
        table.clear(columns=True)
        table.add_columns("step", "node", "status", "started", "took", "error")
        for node in self.detail.nodes:
            took = (node.finished_at - node.started_at).total_seconds() if node.finished_at else None
            table.add_row(
                str(node.step),
                node.node,
                f"{icon(node.status)} {node.status}",
                _clock(node.started_at),
                _seconds(took),
                (node.error or "").splitlines()[0] if node.error else "",
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """``n`` is offered (in the footer) only for a graph task: others have no nodes."""
        if action == "tab" and parameters == ("detail-nodes",):
            return self.detail is not None and self.detail.agent_kind == "graph"
        return True

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one("#detail-tabs", TabbedContent)
        if tab == "detail-nodes" and (self.detail is None or self.detail.agent_kind != "graph"):
            self.notify(f"{self.task_key} is not a graph task: it has no nodes", severity="information")
            return
        tabs.active = tab

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


def _json(value: Any) -> JSON | Text:
    try:
        return JSON(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return Text(repr(value))
