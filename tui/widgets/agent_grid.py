"""The agent panes of the selected workflow: they appear as tasks start and leave a while after they end — a
failed task's pane stays until dismissed (``dismiss_failed``, the ``x`` key).

``consume`` only records what arrived (lines, states, progress); ``render_frame`` shows it, once a frame, called
by the main screen right after it drained the event feed — so a frame is one pass over the panes, however many
events came in.
"""

from __future__ import annotations

import time

from textual.containers import Grid

from db.models import TASK_RUN_END_EVENTS, Event, EventType, Task
from tui.status import UsageLedger
from tui.widgets.agent_pane import AgentPane

LINGER_S = 3.0  # a finished pane stays this long, so its last lines can be read
PANES_PER_FRAME = 4  # at most this many logs are written in one frame (the rest the next)
MIN_PANE_WIDTH = 24  # columns: "✔ write_code · coder …" still fits

#: The state a task's pane shows after each of these events.
_PANE_STATES: dict[str, str] = {
    EventType.TASK_PAUSED: "paused",
    EventType.TASK_RESUMED: "running",
    EventType.TASK_RETRYING: "retrying",
    EventType.TASK_COMPLETED: "completed",
    EventType.TASK_FAILED: "failed",
    EventType.TASK_CANCELLED: "cancelled",
}


class AgentGrid(Grid):
    """A grid of ``AgentPane``; one pane per running task of the selected workflow."""

    def __init__(self, usage: UsageLedger | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.usage = usage  # the screen's LLM usage sums, which each pane's header shows
        self.workflow: str | None = None
        self.panes: dict[tuple[str, str], AgentPane] = {}
        self._ended: dict[tuple[str, str], float] = {}
        self.maximised: AgentPane | None = None
        self._columns_stale = False  # panes came or went: the grid's shape is set again once, in the frame
        self._frame = 0
        self._seen: dict[tuple[str, str], int] = {}  # the last seq each pane took: history and live overlap

    def show_workflow(self, workflow: str) -> None:
        if workflow == self.workflow:
            return
        self.workflow = workflow
        for key, pane in list(self.panes.items()):
            pane.display = key[0] == workflow
        self._relayout()

    def restore(self, workflow: str, running: list[Task], history: list[Event]) -> None:
        """Panes for the tasks of ``workflow`` that were running before this dashboard saw them start (it attached
        to another process's engine, or opened on a workflow already under way), with what ``history`` (from the
        event table) holds of their current attempt."""
        for task in running:
            key = (workflow, task.key)
            if key in self.panes:
                continue
            own = [event for event in history if event.task == task.key]
            starts = [index for index, event in enumerate(own) if event.type == EventType.TASK_STARTED]
            pane = self._add_pane(key, task.agent)
            pane.set_state("running", attempt=task.attempts or 1, at=task.started_at)
            self.consume(own[starts[-1] :] if starts else own)
            if task.status.value in ("paused", "waiting"):  # as the tree says: frozen, or waiting for a person
                pane.set_state(task.status.value)

    def _add_pane(self, key: tuple[str, str], agent: str) -> AgentPane:
        pane = AgentPane(key[0], key[1], agent, usage=self.usage)
        self.panes[key] = pane
        # Behind a maximised pane, a new one waits hidden (the badge counts it).
        pane.display = key[0] == self.workflow and self.maximised is None
        self.mount(pane)
        self._columns_stale = True
        return pane

    def consume(self, events: list[Event]) -> None:
        for event in events:
            if event.task is None:
                continue
            key = (event.workflow, event.task)
            if event.seq <= self._seen.get(key, 0):
                continue  # taken already: from the event table and then live, or the other way round
            self._seen[key] = event.seq
            pane = self.panes.get(key)
            if event.type == EventType.TASK_STARTED:
                if pane is None:
                    pane = self._add_pane(key, event.agent or "?")
                pane.set_state("running", attempt=event.attempt, at=event.ts)
                pane.worker = None  # a new attempt: whichever worker takes it says so
                self._ended.pop(key, None)
            elif pane is None:
                continue
            elif event.type == EventType.TASK_OUTPUT:
                pane.add_lines(event.output_lines, event.stream)
            elif event.type == EventType.TASK_PROGRESS:
                pane.set_progress(event.progress)
            elif event.type == EventType.TASK_ASSIGNED:
                pane.worker = str(event.data.get("worker") or "") or None
            elif event.type == EventType.TASK_RETRYING and event.data.get("redelivered"):
                # Its worker died and another runs the command again: the same attempt goes on, in the state it was
                # (running, or paused: the new worker holds it until resumed), not "retrying".
                pane.add_line(f"— {event.error}", "stderr")
            elif event.type in _PANE_STATES:
                pane.set_state(_PANE_STATES[event.type], at=event.ts)
                if event.type == EventType.TASK_RETRYING:
                    pane.add_line(f"— attempt failed: {event.error}; retrying", "stderr")
                elif event.type == EventType.TASK_FAILED:
                    self._ended.pop(key, None)  # stays until dismissed (x): a failure is read, not missed
                elif event.type in TASK_RUN_END_EVENTS:
                    self._ended[key] = self.linger_clock()

    def linger_clock(self) -> float:
        """Seconds that the linger of a finished pane is measured in: wall time here (a replay uses recorded time)."""
        return time.monotonic()

    def render_frame(self) -> None:
        """Remove panes that lingered long enough; show what arrived in the visible ones."""
        now = self.linger_clock()
        for key, ended in list(self._ended.items()):
            if now - ended > LINGER_S and self.panes.get(key) is not self.maximised:
                self._ended.pop(key)
                pane = self.panes.pop(key)
                pane.remove()
                self._columns_stale = True
        if self._columns_stale:
            self._relayout()
        self._frame += 1
        waiting = []
        for pane in self.panes.values():
            if pane.display:
                pane.show_header()
                if pane.has_output():
                    waiting.append(pane)
        # Painting a pane whose log moved costs a few milliseconds (its rows, its scrollbars): with many busy
        # panes, they take turns — the longest-waiting first — so a frame's work stays bounded and frames keep
        # coming 20 times a second; each pane is still written at least every few frames.
        waiting.sort(key=lambda p: p.written_frame)
        for pane in waiting[:PANES_PER_FRAME]:
            pane.write_output()
            pane.written_frame = self._frame

    def dismiss_failed(self) -> int:
        """Remove the selected workflow's failed panes (the focused one only, if a failed pane has the focus);
        returns how many went."""
        focused = self.screen.focused
        failed = [key for key, pane in self.panes.items() if key[0] == self.workflow and pane.state == "failed"]
        chosen = [k for k in failed if focused is not None and self.panes[k] in focused.ancestors_with_self]
        for key in chosen or failed:
            pane = self.panes.pop(key)
            if pane is self.maximised:  # the others were hidden for it: show them again
                self.maximised = None
                for other_key, other in self.panes.items():
                    other.display = other_key[0] == self.workflow
            pane.remove()
        if chosen or failed:
            self._relayout()
        return len(chosen or failed)

    def hidden_by_maximise(self) -> int:
        """How many of the selected workflow's panes the maximised one hides."""
        if self.maximised is None:
            return 0
        return sum(1 for key, pane in self.panes.items() if key[0] == self.workflow and pane is not self.maximised)

    def _badge(self) -> None:
        """The maximised pane says so on its border, with how many panes it hides and how to bring them back."""
        hidden = self.hidden_by_maximise()
        for pane in self.panes.values():
            text = f"maximised · {hidden} hidden · m restores" if pane is self.maximised else ""
            if pane.border_subtitle != text:
                pane.border_subtitle = text

    def visible_panes(self) -> list[AgentPane]:
        return [pane for pane in self.panes.values() if pane.display]

    def toggle_maximise(self) -> AgentPane | None:
        """Give one pane the whole grid (the focused one, else the first); again to restore."""
        if self.maximised is not None:
            self.maximised = None
        else:
            focused = self.screen.focused
            panes = self.visible_panes()
            chosen = next((p for p in panes if focused is not None and p in focused.ancestors_with_self), None)
            self.maximised = chosen or (panes[0] if panes else None)
        for key, pane in self.panes.items():
            pane.display = key[0] == self.workflow and (self.maximised is None or pane is self.maximised)
        self._relayout()
        return self.maximised

    def on_resize(self) -> None:
        self._columns_stale = True  # laid out again in the next frame, for the new width

    def _relayout(self) -> None:
        self._columns_stale = False
        self._badge()
        count = max(1, len(self.visible_panes()))
        columns = 1 if count == 1 else 2 if count <= 4 else 3
        if self.size.width:  # narrow (80 columns): fewer, wider panes, so each title keeps its task's name
            columns = max(1, min(columns, self.size.width // MIN_PANE_WIDTH))
        self.styles.grid_size_columns = columns
        self.styles.grid_size_rows = max(1, -(-count // columns))
