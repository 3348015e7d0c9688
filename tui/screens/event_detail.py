"""One event in full (``Enter`` on a row of the event log): its id, time, seq, type, workflow, task, agent and all
of its data as JSON — an output chunk's every line, an error's whole text."""

from __future__ import annotations

import json

from rich.json import JSON
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from db.models import Event


class EventDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        event = self.event
        with VerticalScroll(id="event-detail-box") as box:
            box.border_title = f"{event.type} · seq {event.seq}" + (f" · {event.task}" if event.task else "")
            yield Static(JSON(json.dumps(event.to_json_dict(), default=str)), id="event-detail-json")
        yield Footer()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
