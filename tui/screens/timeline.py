"""The checkpoint timeline (``b``): each checkpoint with its time and what had completed, a diff of task
states against now, and rollback to the chosen one after a confirmation — or, with ``d``, diverge from it: a new
workflow with the same spec that starts there (``Engine.diverge``), leaving this one as it is."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from db.models import Checkpoint, Task
from engine.checkpoints import state_at
from tui.status import icon


@dataclass(frozen=True)
class DivergeFrom:
    """What the timeline dismisses with on ``d``: start a new workflow from ``checkpoint``, which carries the
    tasks ``completed`` there."""

    checkpoint: Checkpoint
    completed: list[str]


class CheckpointTimeline(ModalScreen[str | DivergeFrom | None]):
    """Dismisses with the chosen checkpoint id (to roll back to), ``DivergeFrom`` (``d``) or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("enter", "choose", "Roll back here"),
        Binding("d", "diverge", "Diverge from here"),
    ]

    def __init__(self, workflow: str, checkpoints: list[Checkpoint], tasks: list[Task]) -> None:
        super().__init__()
        self.workflow = workflow
        self.checkpoints = checkpoints
        self.tasks = tasks

    def compose(self) -> ComposeResult:
        with Vertical(id="timeline-box"):
            yield Label(
                f"Checkpoints of {self.workflow} — Enter: roll back to the highlighted one · d: diverge from it (a "
                "new workflow from there) · Esc: close"
            )
            with Horizontal():
                yield DataTable(id="timeline-table", cursor_type="row", zebra_stripes=True)
                yield Static(id="timeline-diff")
        yield Footer()  # the keys of this screen, as on the main screen

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "time", "done", "reason")
        for checkpoint in self.checkpoints:
            states, _ = state_at(self.checkpoints, checkpoint.number)
            done = sum(1 for s in states.values() if s.get("status") == "completed")
            table.add_row(
                str(checkpoint.number),
                f"{checkpoint.created_at:%H:%M:%S}",
                f"{done}/{len(self.tasks)}",
                checkpoint.reason,
                key=checkpoint.id,
            )
        if self.checkpoints:
            table.move_cursor(row=len(self.checkpoints) - 1)
            self._show_diff(self.checkpoints[-1])
        table.focus()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        chosen = next((c for c in self.checkpoints if c.id == event.row_key.value), None)
        if chosen is not None:
            self._show_diff(chosen)

    def diff(self, checkpoint: Checkpoint) -> list[tuple[str, str, str]]:
        """(task, status now, status after rollback) for every task whose state would change."""
        states, _ = state_at(self.checkpoints, checkpoint.number)
        out = []
        for task in self.tasks:
            then = states.get(task.key, {}).get("status")
            after = "completed" if then == "completed" else "pending"
            if after != task.status.value:
                out.append((task.key, task.status.value, after))
        return out

    def _show_diff(self, checkpoint: Checkpoint) -> None:
        changes = self.diff(checkpoint)
        text = Text.from_markup(f"[b]Rolling back to #{checkpoint.number}[/] ({checkpoint.reason})\n\n")
        if not changes:
            text.append("nothing changes: this is where the workflow is now")
        for key, now, after in changes:
            text.append_text(Text.from_markup(f"{icon(now)} {key}: {now} → {icon(after)} {after}\n"))
        if changes:
            text.append(f"\n{sum(1 for _, _, a in changes if a == 'pending')} task(s) run again")
        self.query_one("#timeline-diff", Static).update(text)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes Enter itself, so this is where a choice lands)."""
        self.dismiss(str(event.row_key.value))

    def highlighted(self) -> Checkpoint | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return next((c for c in self.checkpoints if c.id == row_key.value), None)

    def action_choose(self) -> None:
        chosen = self.highlighted()
        if chosen is not None:
            self.dismiss(chosen.id)

    def action_diverge(self) -> None:
        chosen = self.highlighted()
        if chosen is not None:
            states, _ = state_at(self.checkpoints, chosen.number)
            done = [task.key for task in self.tasks if states.get(task.key, {}).get("status") == "completed"]
            self.dismiss(DivergeFrom(chosen, done))
