"""The graph state editor: a graph checkpoint's state values as JSON, edited before a time-travel fork.

Saving parses the JSON and dismisses with only the keys whose values changed — what ``Engine.fork_graph`` applies
to the forked checkpoint. Those go through the state's reducers, as a node's writes would (a list with an
``operator.add`` reducer gets what you send appended, not replaced), which the hint under the title says. A
mistake (invalid JSON, not an object, a removed key, nothing changed) is shown under the editor; nothing is sent.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static, TextArea

_MISSING = object()


def changed_values(before: dict[str, Any], text: str) -> dict[str, Any]:
    """The keys of the JSON object ``text`` whose values differ from ``before``; ``ValueError`` says what is wrong."""
    try:
        after = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(after, dict):
        raise ValueError('the state is a JSON object: { "key": value, ... }')
    removed = sorted(set(before) - set(after))
    if removed:
        raise ValueError(f"a fork cannot remove state keys ({', '.join(removed)}): put them back or change their value")
    changed = {key: value for key, value in after.items() if before.get(key, _MISSING) != value}
    if not changed:
        raise ValueError("nothing changed: edit a value, or close this and press r to replay as it is")
    return changed


class StateEditor(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the changed keys and their new values, or None when cancelled."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Fork with these values"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, values: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(id="editor-box") as box:
            box.border_title = "edit state, then fork"
            yield Label(self.title_text, id="editor-title", markup=False)
            yield Static(
                "[dim]Only the keys you change are sent, and through the state's reducers: a list with an add "
                "reducer gets what you send appended.[/]\n"
                "[b]ctrl+s[/] fork with these values · [b]esc[/] leave the editor, [b]esc[/] again: cancel",
                id="editor-hint",
            )
            yield TextArea.code_editor(
                json.dumps(self.values, indent=2, ensure_ascii=False, default=str), language="json", id="editor-text"
            )
            yield Label("", id="editor-error")
            with Horizontal(id="editor-buttons"):
                yield Button("Fork (ctrl+s)", variant="warning", id="save")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()  # the keys of this screen, as on the main screen

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        try:
            changed = changed_values(self.values, self.query_one(TextArea).text)
        except ValueError as exc:
            self.query_one("#editor-error", Label).update(Text.assemble(("✘ ", "bold red"), str(exc)))
            return
        self.dismiss(changed)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()
