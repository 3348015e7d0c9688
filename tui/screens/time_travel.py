"""Time travel (``t``): a graph task's checkpoint history, and a fork from any step of it.

The table lists the task's LangGraph thread newest first — step, source, the nodes that ran to make the
checkpoint, what runs next, when, and a summary of the state; the highlighted checkpoint's full state is on the
side. ``r`` / ``enter`` replays from the highlighted step (after a confirmation), ``e`` edits its state first
(``StateEditor``). Both call ``Engine.fork_graph``: the thread forks there and the task runs again, so only the
steps after it run; history is kept. When tasks after it had completed (on its old output), the screen asks whether
they run again too (yes by default: what a replay is for) or keep their outputs. The screen closes after a fork
and says where it forked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from db.models import TaskStatus
from engine.api import DashboardEngine
from engine.errors import ControlError
from engine.graph.threads import HistoryEntry
from engine.spec import WorkflowSpec
from tui.screens.confirm import ChoiceScreen, ConfirmScreen
from tui.screens.state_editor import StateEditor

SUMMARY_WIDTH = 28  # the table and the state beside it fit 140 columns; the full state is on the side


def clock(created_at: str) -> str:
    """``09:00:03`` from a checkpoint's ISO timestamp (the text itself when it is not one)."""
    try:
        return f"{datetime.fromisoformat(created_at):%H:%M:%S}"
    except ValueError:
        return created_at


def nodes(names: list[str]) -> str:
    return ", ".join(names) if names else "—"


class TimeTravelScreen(ModalScreen[str | None]):
    """Dismisses with the forked thread's new head checkpoint, or None when closed without a fork."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("r", "replay", "Replay from here"),
        Binding("e", "edit", "Fork with edited state"),
    ]

    def __init__(self, engine: DashboardEngine, workflow: str, task: str, history: list[HistoryEntry]) -> None:
        super().__init__()
        self.engine = engine
        self.workflow = workflow
        self.task_key = task
        self.history = history
        self._forking = False

    def compose(self) -> ComposeResult:
        with Vertical(id="travel-box") as box:
            box.border_title = f"time travel · {self.task_key} · {self.workflow}"
            yield Label(
                "[b]r[/]/[b]Enter[/] replay from the highlighted step · [b]e[/] fork with edited state · "
                "[b]Esc[/] close\n[dim]A fork runs only the steps after that checkpoint again; the history is kept.[/]",
                id="travel-help",
            )
            with Horizontal(id="travel-body"):
                yield DataTable(id="travel-table", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="travel-detail"):
                    yield Static(id="travel-state")
        yield Footer()  # the keys of this screen, as on the main screen

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("step", "source", "ran", "next", "time", "state")
        for entry in self.history:
            summary = entry.summary if len(entry.summary) <= SUMMARY_WIDTH else entry.summary[: SUMMARY_WIDTH - 1] + "…"
            table.add_row(
                Text(str(entry.step), justify="right"),
                entry.source,
                nodes(entry.ran),
                nodes(entry.next) if entry.next else Text("(end)", style="dim"),
                clock(entry.created_at),
                Text(summary, style="dim"),
                key=entry.checkpoint,
            )
        if self.history:
            self._show(self.history[0])
        table.focus()

    def entry(self, checkpoint: str) -> HistoryEntry | None:
        return next((h for h in self.history if h.checkpoint == checkpoint), None)

    def highlighted(self) -> HistoryEntry | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        return self.entry(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def _show(self, entry: HistoryEntry) -> None:
        head = Text.from_markup(f"[b]step {entry.step}[/] · {entry.source} · next: ")
        head.append(nodes(entry.next) if entry.next else "(end)", style="bold")
        head.append(f"\n{entry.checkpoint}\n", style="dim")
        self.query_one("#travel-state", Static).update(
            Text.assemble(head, "\n", JSON.from_data(entry.values, default=str).text)
        )

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        found = self.entry(str(event.row_key.value))
        if found is not None:
            self._show(found)

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        """Enter on a row (the table takes Enter itself, so this is where it lands)."""
        self.action_replay()

    # ---- forking -------------------------------------------------------------------------------------------

    def action_replay(self) -> None:
        entry = self.highlighted()
        if entry is None or self._forking:
            return
        # The confirm box is narrow: one short line each.
        runs = f"Runs again from {nodes(entry.next)}." if entry.next else "Nothing is left to run after it."
        question = f"Replay {self.task_key} from step {entry.step}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._fork(entry, None)

        self.app.push_screen(ConfirmScreen(question, f"{runs}\nThe thread forks; its history is kept."), answered)

    def action_edit(self) -> None:
        entry = self.highlighted()
        if entry is None or self._forking:
            return

        def edited(values: dict[str, Any] | None) -> None:
            if values is not None:
                self._fork(entry, values)

        title = f"State of {self.task_key} at step {entry.step} (checkpoint {entry.checkpoint})"
        self.app.push_screen(StateEditor(title, entry.values), edited)

    def _fork(self, entry: HistoryEntry, values: dict[str, Any] | None) -> None:
        self._forking = True
        self._run_fork(entry, values)

    async def completed_downstream(self) -> list[str]:
        """The tasks after this one that completed: they used its old output."""
        workflow = await self.engine.stores.workflows.get(self.workflow)
        if workflow is None:
            return []
        later = WorkflowSpec.model_validate(workflow.spec).downstream(self.task_key)
        tasks = await self.engine.stores.tasks.list(self.workflow)
        return sorted(t.key for t in tasks if t.key in later and t.status is TaskStatus.COMPLETED)

    @work(group="time-travel-fork", exit_on_error=False)
    async def _run_fork(self, entry: HistoryEntry, values: dict[str, Any] | None) -> None:
        done = await self.completed_downstream()
        downstream = True
        if done:  # ask: run them again with the new output (what a replay is for), or keep what they made
            shown = ", ".join(done[:4]) + (f" and {len(done) - 4} more" if len(done) > 4 else "")
            answer = await self.app.push_screen_wait(
                ChoiceScreen(
                    f"Re-run {len(done)} completed task{'s' if len(done) > 1 else ''} after it?",
                    f"{shown} used its old output.\nYes: they run again. No: they keep it. Esc: no fork.",
                )
            )
            if answer is None:
                self._forking = False
                return
            downstream = answer
        try:
            head = await self.engine.fork_graph(
                self.workflow, self.task_key, entry.checkpoint, values, downstream=downstream
            )
        except ControlError as exc:
            self._forking = False
            self.notify(str(exc), title="cannot fork", severity="error")
            return
        edited = f" with {', '.join(sorted(values))} edited" if values else ""
        after = f", then {len(done)} task{'s' if len(done) > 1 else ''} after it" if done and downstream else ""
        message = f"{self.task_key}: forked at step {entry.step}{edited}; running steps after it{after}"
        self.notify(message, title="time travel")
        self.dismiss(head)
