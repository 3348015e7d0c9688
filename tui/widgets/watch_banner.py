"""The banner a triggered watchpoint raises across the main screen: which watchpoint paused which workflow, at which
task, why (the event's ``reason``: the conditions that held and their values), and the keys that answer it.

It holds the latest ``watchpoint.triggered`` event of each workflow still paused by one (newest shown, the others
counted) and forgets a workflow's when the main screen says it went on or ended (``clear``). It only shows; the
main screen (``tui.screens.main_watch``) binds the keys and acts.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from db.models import Event

#: The keys the banner names (bound on the main screen while it is up).
KEYS = (("g", "resume"), ("k", "cancel"), ("d", "remove it and resume"), ("Esc", "dismiss"))


def banner_text(event: Event, workflow_name: str | None, others: int) -> Text:
    """``◉ watchpoint W paused NAME at task T`` / ``why: REASON`` / the keys (names are the author's: no markup)."""
    data = event.data
    label = data.get("name") or data.get("when") or data.get("watchpoint") or "?"
    text = Text("◉ watchpoint ", style="bold")
    text.append(str(label), style="bold reverse")
    text.append(" paused ", style="bold")
    text.append(workflow_name or event.workflow, style="bold")
    if event.task:
        text.append(" at task ", style="bold")
        text.append(event.task, style="bold underline")
    if others:
        text.append(f"  (+{others} more paused by watchpoints)", style="italic")
    text.append("\nwhy: ", style="bold")
    text.append(str(data.get("reason") or "its condition held"))
    text.append("\n")
    for index, (key, what) in enumerate(KEYS):
        text.append(("  ·  " if index else ""), style="dim")
        text.append(f" {key} ", style="bold reverse")
        text.append(f" {what}")
    return text


class WatchBanner(Static):
    """Hidden until a watchpoint triggers; ``hit`` is what it shows (None: hidden)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.hits: dict[str, Event] = {}  # workflow → its latest trigger, oldest first
        self.names: dict[str, str] = {}

    @property
    def hit(self) -> Event | None:
        """The trigger shown: the newest."""
        return next(reversed(self.hits.values()), None)

    def add(self, event: Event, workflow_name: str | None) -> None:
        self.hits.pop(event.workflow, None)
        self.hits[event.workflow] = event
        if workflow_name:
            self.names[event.workflow] = workflow_name
        self._show()

    def clear(self, workflow: str) -> Event | None:
        """Forget a workflow's trigger (it resumed, ended, or the user dismissed it); returns it if there was one."""
        gone = self.hits.pop(workflow, None)
        if gone is not None:
            self._show()
        return gone

    def _show(self) -> None:
        hit = self.hit
        self.set_class(hit is not None, "-up")
        if hit is not None:
            self.update(banner_text(hit, self.names.get(hit.workflow), len(self.hits) - 1))
