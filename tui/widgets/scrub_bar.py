"""The replay's scrub bar: where the replay is in its recording, as a bar one line high; a click jumps there
(``ScrubBar.Seek``). Keys move it from the replay screen."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget


class ScrubBar(Widget):
    """``━━━━━━●────────`` over the width: the played part, the position, the rest."""

    DEFAULT_CSS = "ScrubBar { height: 1; }"

    class Seek(Message):
        """Jump to ``position`` (events applied)."""

        def __init__(self, position: int) -> None:
            super().__init__()
            self.position = position

    def __init__(self, length: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.length = length
        self.position = 0

    def move(self, position: int) -> None:
        if position != self.position:
            self.position = position
            self.refresh()

    def render(self) -> Text:
        width = max(2, self.size.width)
        at = 0 if not self.length else round(self.position / self.length * (width - 1))
        text = Text("━" * at, style="green")
        text.append("●", style="bold white")
        text.append("─" * (width - 1 - at), style="grey42")
        return text

    def position_at(self, x: int) -> int:
        """The position a click at column ``x`` asks for."""
        width = max(2, self.size.width)
        return round(max(0, min(x, width - 1)) / (width - 1) * self.length)

    def on_click(self, event: events.Click) -> None:
        self.post_message(self.Seek(self.position_at(event.x)))
