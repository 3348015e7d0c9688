"""The watchpoints of one workflow (``w`` on the main screen, or the command palette).

It lists them (the expression or its name, the task it is scoped to, whether the workflow file declared it or it
was added live, how often it paused the workflow) and has an input to add one. What is typed is checked as it is
typed (``engine.spec.watch_expr.parse_watch``): a mistake shows its column, marked in the expression, under the
input, and ``Enter`` adds nothing until it reads. With a task selected on the main screen, a new watchpoint is
scoped to that task's events (``ctrl+t`` or the checkbox widens it to the whole workflow). ``d`` removes the
highlighted one, after asking. Changes go through the engine's public API (``add_watchpoint``,
``remove_watchpoint``); the list follows the workflow's ``watchpoint.*`` events, and rereads itself every few
seconds for the trigger counts, which the engine stores after the pause.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.signal import Signal
from textual.validation import ValidationResult, Validator
from textual.widgets import Checkbox, DataTable, Footer, Input, Label

from db.models import Event, EventType, Watchpoint
from engine.api import DashboardEngine
from engine.errors import ControlError
from engine.spec.watch_expr import WatchSyntaxError, parse_watch
from tui.screens.confirm import ConfirmScreen

RECHECK_S = 2.0  # how often the list is read again while open (trigger counts are stored after the pause)
EXAMPLES = 'e.g.  output ~ "Traceback"  ·  cost_usd > 0.50  ·  running > 5m  ·  failures >= 3 within 10m'
#: The events after which the list is read again at once.
LIST_CHANGES = {EventType.WATCHPOINT_ADDED, EventType.WATCHPOINT_REMOVED, EventType.WATCHPOINT_TRIGGERED}


def check(text: str) -> WatchSyntaxError | None:
    """What is wrong with a typed expression (None when it reads). Never raises: whatever the parser does with
    what a person types, the dashboard shows a message rather than a traceback."""
    try:
        parse_watch(text)
    except WatchSyntaxError as exc:
        return exc
    except Exception as exc:  # not expected from the parser; a message all the same, never a crash
        return WatchSyntaxError(f"cannot read the expression ({type(exc).__name__})", column=1)
    return None


def marked(text: str, error: WatchSyntaxError) -> Text:
    """The expression as typed with the character at the error's column marked (a space past its end)."""
    at = max(0, min(error.column - 1, len(text)))
    shown = Text(text[:at])
    shown.append(text[at : at + 1] or " ", style="bold white on red")
    shown.append(text[at + 1 :])
    return shown


def problem(text: str, error: WatchSyntaxError) -> Text:
    """Two lines under the input: ``✘ column N: what is wrong`` and the expression with that column marked."""
    line = Text.assemble(("✘ ", "bold red"), (f"column {error.column}: ", "bold"), (error.message, "red"), "\n  ")
    line.append_text(marked(text, error))
    return line


class WatchExpression(Validator):
    """The input's validator: red border while the expression does not read (empty is not a mistake yet)."""

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.success()
        error = check(value)
        return self.success() if error is None else self.failure(str(error))


def watching_text(watchpoint: Watchpoint) -> Text:
    """``name  expression`` (the expression dim), or the expression alone; the author's words, never markup."""
    if watchpoint.name is None:
        return Text(watchpoint.when)
    return Text.assemble((watchpoint.name, "bold"), "  ", (watchpoint.when, "dim"))


def triggered_text(watchpoint: Watchpoint) -> str:
    if not watchpoint.triggered:
        return "never"
    last = watchpoint.last_triggered_at
    return f"{watchpoint.triggered}×" + (f" {last.astimezone():%H:%M:%S}" if last is not None else "")


class WatchpointsScreen(ModalScreen[None]):
    """A workflow's watchpoints: list, add (``Enter``), remove (``d``)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+t", "toggle_scope", "Task/workflow"),
        Binding("d,delete", "remove", "Remove"),
    ]
    #: Short terminals (24 rows) drop the box's padding and the examples line, so the input and its message show.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        engine: DashboardEngine,
        workflow: str,
        *,
        workflow_name: str | None = None,
        task: str | None = None,
        events: Signal[list[Event]] | None = None,
        focus_list: bool = False,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.workflow = workflow
        self.workflow_name = workflow_name
        self.scope_task = task
        self.watchpoints: list[Watchpoint] = []
        self._events = events
        self._focus_list = focus_list
        self._loaded = False

    def compose(self) -> ComposeResult:
        # Names are the workflow author's: assembled as text, never parsed as markup.
        where = Text.assemble(f"{self.workflow_name} " if self.workflow_name else "", (self.workflow, "dim"))
        with Vertical(id="watch-box") as box:
            box.border_title = "◉ watchpoints"
            box.border_subtitle = "Enter adds · Tab to the list · d removes · Esc closes"
            yield Label(where, id="watch-where")
            yield DataTable(id="watch-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="watch-empty")
            yield Input(
                placeholder="pause when… (a condition, Enter adds it)",
                validators=[WatchExpression()],
                validate_on=["changed"],
                id="watch-input",
            )
            yield Label(Text(EXAMPLES, style="dim"), id="watch-check")
            if self.scope_task is not None:
                yield Checkbox(f"only task {self.scope_task}'s events (ctrl+t)", True, id="watch-scope")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("watching", key="when")
        table.add_column("task", key="task")
        table.add_column("from", key="origin")
        table.add_column("paused it", key="triggered")
        self.query_one(DataTable if self._focus_list else Input).focus()
        if self._events is not None:
            self._events.subscribe(self, self._follow, immediate=True)
        self.reload()
        self.set_interval(RECHECK_S, self.reload)

    # ---- the list ------------------------------------------------------------------------------------------

    @work(exclusive=True, group="watchpoints-list", exit_on_error=False)
    async def reload(self) -> None:
        try:
            found = await self.engine.watchpoints(self.workflow)
        except ControlError as exc:
            self.query_one("#watch-empty", Label).update(Text(f"cannot read the watchpoints: {exc}", style="red"))
            return
        self._show(found)

    def _show(self, found: list[Watchpoint]) -> None:
        shown = [(w.id, w.label, w.task, w.origin, w.triggered, w.last_triggered_at) for w in self.watchpoints]
        fresh = [(w.id, w.label, w.task, w.origin, w.triggered, w.last_triggered_at) for w in found]
        self._loaded = True
        empty = "" if found else "no watchpoint yet: type a condition below and press Enter"
        self.query_one("#watch-empty", Label).update(Text(empty, style="dim"))
        self.query_one("#watch-empty").display = not found
        if shown == fresh:
            return
        self.watchpoints = found
        table = self.query_one(DataTable)
        at = table.cursor_row
        table.clear()
        for watchpoint in found:
            table.add_row(
                watching_text(watchpoint),
                Text(watchpoint.task or "all tasks", style="" if watchpoint.task else "dim"),
                watchpoint.origin,
                Text(triggered_text(watchpoint), style="bold yellow" if watchpoint.triggered else "dim"),
                key=watchpoint.id,
            )
        if found:
            table.move_cursor(row=min(at, len(found) - 1))

    def _follow(self, events: list[Event]) -> None:
        if any(e.workflow == self.workflow and e.type in LIST_CHANGES for e in events):
            self.reload()

    def highlighted(self) -> Watchpoint | None:
        table = self.query_one(DataTable)
        if not self.watchpoints or table.row_count == 0:
            return None
        return self.watchpoints[min(table.cursor_row, len(self.watchpoints) - 1)]

    # ---- adding --------------------------------------------------------------------------------------------

    @property
    def scoped(self) -> bool:
        """Whether a new watchpoint watches only the selected task's events."""
        return self.scope_task is not None and self.query_one("#watch-scope", Checkbox).value

    def action_toggle_scope(self) -> None:
        if self.scope_task is None:
            self.notify("select a task in the tree first to watch only its events", severity="information")
            return
        self.query_one("#watch-scope", Checkbox).toggle()

    @on(Input.Changed, "#watch-input")
    def _typed(self, event: Input.Changed) -> None:
        text = event.value
        if not text.strip():
            self._say(Text(EXAMPLES, style="dim"))
            return
        error = check(text)
        self._say(Text("✔ reads well: Enter adds it", style="green") if error is None else problem(text, error))

    def _say(self, message: Text) -> None:
        self.query_one("#watch-check", Label).update(message)

    @on(Input.Submitted, "#watch-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self._say(Text("type a condition first, then Enter. " + EXAMPLES, style="yellow"))
            return
        error = check(text)
        if error is not None:  # already shown under the input; Enter does not add a watchpoint that cannot run
            self._say(problem(text, error))
            self.app.bell()
            return
        self._add(text, self.scope_task if self.scoped else None)

    @work(group="watchpoints-add", exit_on_error=False)
    async def _add(self, text: str, task: str | None) -> None:
        try:
            added = await self.engine.add_watchpoint(self.workflow, text, task)
        except ControlError as exc:  # InvalidWatchpoint among them: its message has the column
            self._say(Text.assemble(("✘ ", "bold red"), (str(exc), "red")))
            return
        self.query_one("#watch-input", Input).value = ""
        self.notify(f"watching {added.label}" + (f" on task {task}" if task else ""), title="watchpoint added")
        self.reload()

    # ---- removing ------------------------------------------------------------------------------------------

    @work(exclusive=True, group="watchpoints-remove", exit_on_error=False)
    async def action_remove(self) -> None:
        chosen = self.highlighted()
        if chosen is None:
            self.notify("no watchpoint to remove", severity="information")
            return
        detail = "The workflow file still declares it for later runs." if chosen.origin == "file" else ""
        confirmed = await self.app.push_screen_wait(ConfirmScreen(f"Remove watchpoint {chosen.label}?", detail))
        if not confirmed:
            return
        try:
            await self.engine.remove_watchpoint(self.workflow, chosen.id)
        except ControlError as exc:
            self.notify(str(exc), title="cannot remove", severity="error")
        else:
            self.notify(f"no longer watching {chosen.label}", title="watchpoint removed")
        self.reload()

    def action_close(self) -> None:
        self.dismiss(None)
