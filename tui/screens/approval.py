"""The approval prompt: a graph task stopped at ``interrupt()`` and waits for a person.

It shows the task, the node, the question, the prompt's other fields as JSON, and — when the prompt has a
deadline — a live countdown to the default answer. ``y`` approves (true), ``n`` denies (false), ``a`` types an
answer (JSON when it parses, else text), ``escape`` puts the prompt off (it stays pending; ``A`` on the main
screen brings it back). Answers go through ``Engine.approve``. The prompt closes itself when the approval is
answered elsewhere — the CLI, another dashboard, the deadline — told by the main screen from the
``approval.*`` events, and checked every few seconds against the engine in case an event never reaches us.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from db.models import Approval
from engine.api import DashboardEngine
from engine.errors import ControlError
from engine.graph.approvals import question_of

# Prompt keys the screen shows in their own place (the question, the countdown line), not in the JSON.
SHOWN_APART = ("question", "deadline_s", "default")
RECHECK_S = 3.0  # how often the screen asks the engine whether the approval is still open


def now_utc() -> datetime:
    """The countdown's clock (a function of this module so snapshot tests can stop it)."""
    return datetime.now(UTC)


def answer_value(text: str) -> Any:
    """What a typed answer means: JSON when it parses (``true``, ``3``, ``{"ship": true}``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def duration(seconds: float) -> str:
    """``12 s``, ``4m05s``, ``2h10m``."""
    whole = max(0, int(seconds + 0.999))  # round up: "in 1 s" until it is due
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def other_fields(prompt: Any) -> Any:
    """The part of the prompt not shown as the question or the countdown (None when nothing is left)."""
    if isinstance(prompt, dict):
        rest = {k: v for k, v in prompt.items() if k not in SHOWN_APART}
        return rest or None
    return None if isinstance(prompt, str) or prompt is None else prompt


class ApprovalScreen(ModalScreen[bool]):
    """Dismisses with True once the approval is answered (here or elsewhere), False when put off."""

    BINDINGS = [
        Binding("y", "approve", "Approve"),
        Binding("n", "deny", "Deny"),
        Binding("a", "type_answer", "Answer"),
        Binding("escape", "later", "Later"),
    ]
    #: Short terminals fold the margins and let the prompt's fields scroll, so the answer box and the buttons
    #: always show (app.tcss: ``ApprovalScreen.-tiny``, ``.-short``).
    VERTICAL_BREAKPOINTS = [(0, "-tiny"), (27, "-short"), (36, "-tall")]

    def __init__(self, engine: DashboardEngine, approval: Approval, *, workflow_name: str | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.approval = approval
        self.workflow_name = workflow_name
        self._finished = False
        self._sending = False  # an answer is on its way: further keys wait for it

    def compose(self) -> ComposeResult:
        approval = self.approval
        # Names are the workflow author's: assembled as text, never parsed as markup.
        where = Text.assemble(f"{self.workflow_name} " if self.workflow_name else "", (approval.workflow, "dim"))
        where.append_text(Text.assemble(" › task ", (approval.task, "bold")))
        if approval.node:
            where.append_text(Text.assemble(" › node ", (approval.node, "bold")))
        with Vertical(id="approval-box") as box:
            box.border_title = "✋ waiting for you"
            yield Label(where, id="approval-where")
            yield Label(question_of(approval.prompt), id="approval-question", markup=False)
            rest = other_fields(approval.prompt)
            if rest is not None:
                with VerticalScroll(id="approval-fields"):
                    yield Static(JSON.from_data(rest, default=str), id="approval-json")
            yield Label(self._countdown(), id="approval-countdown")
            yield Input(placeholder="a: type an answer (JSON or text), Enter sends it", id="approval-input")
            yield Label("", id="approval-error")
            with Horizontal(id="approval-buttons"):
                yield Button("Approve (y)", variant="success", id="approve")
                yield Button("Deny (n)", variant="error", id="deny")
                yield Button("Answer (a)", variant="primary", id="answer")
                yield Button("Later (esc)", id="later")
        yield Footer()  # this prompt's keys, not the main screen's underneath

    def on_mount(self) -> None:
        # Not the input (y and n would type) and not Approve (a stray Enter must not say yes).
        self.query_one("#later", Button).focus()
        self.set_interval(0.5, self._tick)
        self.set_interval(RECHECK_S, self._recheck)

    def _countdown(self) -> Text:
        deadline = self.approval.deadline
        if deadline is None:
            return Text("no deadline: the task waits until someone answers", style="dim")
        default = json.dumps(self.approval.default, default=str)
        left = (deadline - now_utc()).total_seconds()
        if left <= 0:
            return Text(f"the deadline passed: answering {default}…", style="bold orange1")
        return Text(f"auto-answers {default} in {duration(left)}", style="bold orange1")

    def _tick(self) -> None:
        self.query_one("#approval-countdown", Label).update(self._countdown())

    # ---- answering -----------------------------------------------------------------------------------------

    def action_approve(self) -> None:
        self._send(True)

    def action_deny(self) -> None:
        self._send(False, deny=True)

    def action_type_answer(self) -> None:
        self.query_one("#approval-input", Input).focus()

    def action_later(self) -> None:
        if not self._finished:
            self._finished = True
            self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        actions = {"approve": self.action_approve, "deny": self.action_deny, "later": self.action_later}
        if event.button.id == "answer":
            self._submit_typed()
        elif event.button.id in actions:
            actions[event.button.id]()

    @on(Input.Submitted, "#approval-input")
    def _typed(self) -> None:
        self._submit_typed()

    def _submit_typed(self) -> None:
        text = self.query_one("#approval-input", Input).value.strip()
        if not text:
            self.query_one("#approval-error", Label).update("[red]type an answer first (a), then Enter[/]")
            self.action_type_answer()
            return
        self._send(answer_value(text))

    def _send(self, value: Any, deny: bool = False) -> None:
        if not (self._finished or self._sending):
            self._sending = True
            self._answer(value, deny)

    @work(group="approval-answer", exit_on_error=False)
    async def _answer(self, value: Any, deny: bool) -> None:
        approval = self.approval
        try:
            answered = await self.engine.approve(approval.workflow, approval.task, value, deny=deny, by="dashboard")
        except ControlError as exc:
            self._sending = False
            self.notify(str(exc), title="cannot answer", severity="error")
            if "answered meanwhile" in str(exc) or "no open approval" in str(exc):
                self._close()
            return
        shown = json.dumps(answered.value, default=str)
        self.notify(f"{approval.task}: {answered.status.value} ({shown})", title="approval")
        self._close()

    # ---- answered elsewhere --------------------------------------------------------------------------------

    def answered_elsewhere(self, data: dict[str, Any]) -> None:
        """The main screen saw an ``approval.granted|denied|answered`` event for this approval."""
        if self._finished or self._sending:  # our own answer: the worker that sent it closes the screen
            return
        value = json.dumps(data.get("value"), default=str)
        by = data.get("by") or "someone"
        how = " (the default, at the deadline)" if data.get("default_applied") else ""
        self.notify(f"{self.approval.task}: {data.get('status', 'answered')} {value} by {by}{how}", title="approval")
        self._close()

    @work(exclusive=True, group="approval-recheck", exit_on_error=False)
    async def _recheck(self) -> None:
        if self._finished or self._sending:
            return
        pending = await self.engine.approvals.pending(self.approval.workflow)
        if self.approval.id not in {a.id for a in pending} and not (self._finished or self._sending):
            self.notify(f"{self.approval.task}: answered elsewhere", title="approval")
            self._close()

    def _close(self) -> None:
        if not self._finished:
            self._finished = True
            self.dismiss(True)
