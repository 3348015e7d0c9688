"""The first frame: shown as soon as Textual is up, while the rest of the dashboard is imported and the database and
engine are opened (seconds on a busy machine), so a person sees what is happening instead of a blank terminal.

Only Textual is imported here: this screen must paint before the engine's modules are loaded.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Label, LoadingIndicator


class StartupScreen(Screen[None]):
    """``agentdeck`` and the step under way (``opening database surrealkv://…``), with a spinner."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self._step = step

    def compose(self) -> ComposeResult:
        with Vertical(id="startup-box"):
            yield Label("[b]agentdeck[/]", id="startup-brand")
            yield Label(self._step, id="startup-step")
            yield LoadingIndicator(id="startup-spinner")

    def step(self, text: str) -> None:
        """Say what is being done now."""
        self.query_one("#startup-step", Label).update(text)
