"""The event log: every event as one row under column headers, filterable with ``/`` (substring over type, task,
agent and text; ``!`` first shows failures only). Progress rows are folded away unless the filter asks for
``progress`` (a pane's bar shows progress; in the log they drowned everything else).

An output event is a chunk of lines: its row shows the first line and ``(+N lines)``, and the filter matches any of
its lines. Rows are added at most twenty times a second (a frame), only while the log is on screen (a hidden log
just keeps the events), and each is drawn only when it is painted (``EventRows``): adding a thousand rows costs next
to nothing.
"""

from __future__ import annotations

from collections import deque

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from db.models import Event, EventType
from tui.describe import describe
from tui.widgets.event_rows import EventRows

KEEP = 5_000
#: What ``!`` keeps: the events that say something went wrong.
FAILURES = {
    EventType.TASK_FAILED,
    EventType.TASK_RETRYING,
    EventType.WORKFLOW_FAILED,
    EventType.NODE_FAILED,
    EventType.APPROVAL_DENIED,
}
HEADER = f"{'time':<9}{'type':<20} {'task':<16} details  [dim](progress rows folded: filter progress · ! failures)[/]"


def event_line(event: Event) -> Text:
    """``HH:MM:SS type task details``: the type in the event's style (``tui.describe``), stderr output in red."""
    look = describe(event)
    text = Text(f"{event.ts:%H:%M:%S} ", style="dim")
    text.append(f"{event.type:<20}", style=look.style)
    text.append(f" {event.task or '':<16}", style="bold")
    detail, more = _detail(event, look.text)
    text.append(detail, style="red" if event.stream == "stderr" else None)
    text.append(more, style="dim")
    text.expand_tabs()
    return text


def event_width(event: Event) -> int:
    """The cells ``event_line`` takes, without drawing it."""
    detail, more = _detail(event, None)
    return 9 + max(20, len(event.type)) + 1 + max(16, len(event.task or "")) + cell_len(detail) + len(more)


def _detail(event: Event, described: str | None) -> tuple[str, str]:
    """What a row says after the task: (the first output line or the event's details, ``(+N lines)``);
    ``described`` is ``describe(event).text`` when the caller has it."""
    if event.type == EventType.TASK_OUTPUT:
        lines = event.output_lines
        first = f" {lines[0]}" if lines else ""
        return first, f"  (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    text = describe(event).text if described is None else described
    return (f" {text}" if text else ""), ""


def matches(event: Event, needle: str) -> bool:
    """Whether the log shows ``event`` under filter ``needle``: ``!`` first keeps failures only; progress rows
    only when the filter mentions ``progress``; the rest of the needle is a case-insensitive substring."""
    if needle.startswith("!"):
        if event.type not in FAILURES:
            return False
        needle = needle[1:].strip()
    if event.type == EventType.TASK_PROGRESS and "progress" not in needle.lower():
        return False
    if not needle:
        return True
    lines = event.output_lines if event.type == EventType.TASK_OUTPUT else []
    haystack = " ".join(str(part) for part in (event.type, event.task, event.agent, event.workflow, *lines))
    return needle.lower() in haystack.lower()


class EventLog(Vertical):
    """Recent events, newest at the bottom, with a filter box."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.events: deque[Event] = deque(maxlen=KEEP)
        self._keys: set[tuple[str, int]] = set()  # (workflow, seq) of ``events``: an event is listed once
        self.needle = ""
        self._pending: list[Event] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter events (type, task, agent, text; ! failures only) — Esc to leave",
                    id="event-filter")  # fmt: skip
        yield Static(HEADER, id="event-header")
        yield EventRows(event_line, event_width, keep=KEEP, id="event-lines")

    def on_mount(self) -> None:
        self.set_interval(0.05, self._flush)  # a frame: the screen changes 20 times a second, as the panes do

    def load_history(self, events: list[Event]) -> None:
        """Add stored events (``ui`` over past runs); ones already shown live are not repeated."""
        fresh = [e for e in events if (e.workflow, e.seq) not in self._keys]
        if not fresh:
            return
        merged = sorted([*self.events, *fresh], key=lambda e: (e.ts, e.seq))
        self.events.clear()
        self.events.extend(merged)
        self._keys = {(e.workflow, e.seq) for e in self.events}
        if self.is_on_screen:
            self._rewrite()

    def consume(self, events: list[Event]) -> None:
        # An event is stored before it is published, so history read meanwhile may already hold a live one.
        events = [e for e in events if (e.workflow, e.seq) not in self._keys]
        for event in events:
            if len(self.events) == KEEP:
                oldest = self.events[0]
                self._keys.discard((oldest.workflow, oldest.seq))
            self.events.append(event)
            self._keys.add((event.workflow, event.seq))
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
        self.query_one("#event-lines", EventRows).write(events)

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
        self.query_one("#event-lines", EventRows).clear()
        self._write(self.shown())

    def shown(self) -> list[Event]:
        return [event for event in self.events if matches(event, self.needle)]
