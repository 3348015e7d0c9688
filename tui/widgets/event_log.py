"""The event log: every event as one row, filterable with ``/`` (substring over type, task, agent and text).

An output event is a chunk of lines: its row shows the first line and ``(+N lines)``, and the filter matches any of
its lines. Rows are written at most ten times a second, all of them in one ``RichLog.write``, and only while the
log is on screen (a hidden log just keeps the events).
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, RichLog

from db.models import Event
from engine.events import output_lines

KEEP = 5_000
MAX_PER_FLUSH = 300  # lines rendered per flush (10 a second); a burst beyond that is folded, never lost

_COLOURS = {"completed": "green3", "failed": "red", "cancelled": "magenta", "paused": "yellow", "retrying": "orange1"}


def event_line(event: Event) -> Text:
    kind = event.type.split(".", 1)[-1]
    colour = _COLOURS.get(kind, "cyan" if event.type.startswith("workflow") else "")
    text = Text(f"{event.ts:%H:%M:%S} ", style="dim")
    text.append(f"{event.type:<20}", style=colour)
    text.append(f" {event.task or '':<16}", style="bold")
    if event.type == "task.output":
        lines = output_lines(event)
        if lines:
            text.append(f" {lines[0]}", style="red" if event.data.get("stream") == "stderr" else None)
        if len(lines) > 1:
            text.append(f"  (+{len(lines) - 1} lines)", style="dim")
    else:
        detail = _brief(event)
        text.append(f" {detail}" if detail else "")
    return text


def _brief(event: Event) -> str:
    keep = ("attempt", "error", "reason", "progress", "number", "failed", "delay_s")
    return " ".join(f"{k}={v}" for k, v in event.data.items() if k in keep and v not in (None, "", []))


def matches(event: Event, needle: str) -> bool:
    if not needle:
        return True
    lines = output_lines(event) if event.type == "task.output" else []
    haystack = " ".join(str(part) for part in (event.type, event.task, event.agent, event.workflow, *lines))
    return needle.lower() in haystack.lower()


class EventLog(Vertical):
    """Recent events, newest at the bottom, with a filter box."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.events: deque[Event] = deque(maxlen=KEEP)
        self.needle = ""
        self._pending: list[Event] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter events (type, task, agent, text) — Esc to leave", id="event-filter")
        yield RichLog(max_lines=KEEP, wrap=False, markup=False, id="event-lines")

    def on_mount(self) -> None:
        self.set_interval(0.1, self._flush)

    def load_history(self, events: list[Event]) -> None:
        """Add stored events (``ui`` over past runs); ones already shown live are not repeated."""
        known = {(e.workflow, e.seq) for e in self.events}
        fresh = [e for e in events if (e.workflow, e.seq) not in known]
        if not fresh:
            return
        merged = sorted([*self.events, *fresh], key=lambda e: (e.ts, e.seq))
        self.events.clear()
        self.events.extend(merged)
        if self.is_on_screen:
            self._rewrite()

    def consume(self, events: list[Event]) -> None:
        self.events.extend(events)
        if not self.is_on_screen:  # coming into view rewrites the log from ``events`` anyway
            return
        self._pending.extend(events)
        if len(self._pending) > KEEP:
            del self._pending[: len(self._pending) - KEEP]

    def _flush(self) -> None:
        """Write what arrived, if the log is on screen; a hidden log only keeps the events (cheap)."""
        if not self._pending or not self.is_on_screen:
            return
        fresh = [event for event in self._pending if matches(event, self.needle)]
        self._pending.clear()
        self._write(fresh)

    def _write(self, events: list[Event]) -> None:
        """All the rows in one write: each ``RichLog.write`` costs a measure, a render and a layout."""
        if not events:
            return
        rows: list[Text] = []
        if len(events) > MAX_PER_FLUSH:
            rows.append(Text(f"… {len(events) - MAX_PER_FLUSH} events folded (filter with / to find them)", "dim"))
            events = events[-MAX_PER_FLUSH:]
        rows.extend(event_line(event) for event in events)
        text = Text("\n", no_wrap=True, end="").join(rows)
        self.query_one("#event-lines", RichLog).write(text)

    def on_show(self) -> None:
        """Coming into view: show the newest matching events."""
        self._pending.clear()
        self._rewrite()

    def focus_filter(self) -> None:
        self.query_one("#event-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._pending.clear()
        self._rewrite()

    def _rewrite(self) -> None:
        self.query_one("#event-lines", RichLog).clear()
        self._write(self.shown())

    def shown(self) -> list[Event]:
        return [event for event in self.events if matches(event, self.needle)]
