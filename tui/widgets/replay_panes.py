"""The replay's agent panes: the live dashboard's ``AgentGrid``, fed from a recording instead of an event bus.

Playing or stepping forward hands the events just passed to the grid (``consume``), as the bus does live, so panes
open as tasks start, fill with their output and leave a while after they end (a failed one stays until ``x``). The
linger is counted in recorded time: a finished pane stays while the replay is paused, and for a fraction of a second
at 100x. Any other move (back, a jump, Home/End, a click on the scrub bar) rebuilds the grid for the moment reached:
one pane per task running then (running, paused, waiting for a person, or between attempts), each as playing would
have left it — its events since the pane opened (earlier attempts and their retry notes too), with only its last
``RESTORE_LINES`` lines of output, found through a per-task index of the recording's events, so a rebuild costs the
same wherever it lands.

The task selected in the replay tree is *chosen*: its pane is marked, and a task that is not running (done,
failed, cancelled) gets a pane of its own with its state and its last lines, so what ``lint`` printed when it
failed can be read at any moment after. Pane clocks stop at the recorded time of the moment shown.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime

from db.models import TASK_RUN_END_EVENTS, Event, EventType, TaskStatus
from engine.replay import Replay
from tui.status import UsageLedger
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.agent_pane import AgentPane

#: A task with one of these states has a pane (as live: a retrying task's pane stays between attempts).
PANE_STATES = frozenset({TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.WAITING, TaskStatus.RETRYING})
#: A rebuilt or chosen pane shows at most this many of its task's last lines (a pane keeps 2,000 at most).
RESTORE_LINES = 500
#: A forward move over more events than this rebuilds instead (what a jump passed need not be replayed).
FORWARD_MAX = 2_000


class ReplayGrid(AgentGrid):
    """Agent panes at the replay's position; ``sync`` after every move, ``render_frame`` every frame."""

    def __init__(self, replay: Replay, **kwargs: object) -> None:
        super().__init__(UsageLedger(), **kwargs)
        self.replay = replay
        self.workflow = replay.recording.workflow.id
        #: Each task's events: positions (1-based, as ``Replay`` counts them) and the events, in order.
        self._by_task: dict[str, tuple[list[int], list[Event]]] = {}
        for index, event in enumerate(replay.events):
            if event.task is not None:
                positions, events = self._by_task.setdefault(event.task, ([], []))
                positions.append(index + 1)
                events.append(event)
        self.shown_at = 0  # the position the panes show
        self.chosen: str | None = None  # the task selected in the tree
        self._chosen_only = False  # its pane is there only because it is chosen (not running)
        self.rebuilds = 0  # how many times the panes were built anew (tests tell a rebuild from a step)

    @property
    def ledger(self) -> UsageLedger:
        assert self.usage is not None
        return self.usage

    def _recorded_now(self) -> datetime | None:
        return self.replay.time_at(self.shown_at)

    def linger_clock(self) -> float:
        """Recorded time: a finished pane stays ``LINGER_S`` seconds of the recording (a second at 3x), and while
        the replay is paused."""
        when = self._recorded_now()
        return when.timestamp() if when is not None else 0.0

    def _add_pane(self, key: tuple[str, str], agent: str) -> AgentPane:
        pane = super()._add_pane(key, agent)
        pane.clock = self._recorded_now  # elapsed up to the moment shown, not to now
        if key[1] == self.chosen:
            pane.add_class("-chosen")
        return pane

    # ---- following the replay ----------------------------------------------------------------------------------

    def sync(self, jumped: bool = False) -> None:
        """Show the replay's current position: the events passed since the one shown (playing, a step on), or
        panes built anew (``jumped`` there, gone back, or far ahead)."""
        position = self.replay.position
        if position == self.shown_at and not jumped:
            return
        if not jumped and self.shown_at <= position <= self.shown_at + FORWARD_MAX:
            passed = self.replay.events[self.shown_at : position]
            self.shown_at = position
            if passed:
                self.ledger.consume(passed)
                self.consume(passed)
        else:
            self.rebuild()

    def rebuild(self) -> None:
        """Panes for the tasks with one at the current position, each with its current attempt's last lines."""
        self.rebuilds += 1
        workflow = self.workflow or ""
        wanted = {(workflow, key) for key, view in self.replay.state.tasks.items() if view.status in PANE_STATES}
        # Panes are kept and emptied, for the same task or given to another one: mounting and removing panes
        # lays the whole screen out again, which was most of a jump's cost (bench: replay seek on screen).
        spare = [self.panes.pop(pane_key) for pane_key in list(self.panes) if pane_key not in wanted]
        for pane_key in sorted(wanted - set(self.panes))[: len(spare)]:
            self.panes[pane_key] = spare.pop()
        for (_, task), kept in self.panes.items():
            kept.reset(task, self.replay.state.tasks[task].agent)
            kept.display = True  # a maximised pane hid the others; the grid is given back below
        for unused in spare:
            unused.remove()
            self._columns_stale = True
        self._ended.clear()
        self._seen.clear()
        self.maximised = None
        self._chosen_only = False
        ledger = self.ledger
        ledger.tasks.clear()
        ledger.workflows.clear()
        ledger.agents.clear()
        ledger.version += 1
        ledger.consume(self.replay.events_of_type_so_far(EventType.LLM_USAGE))
        self.shown_at = self.replay.position
        for key, view in self.replay.state.tasks.items():
            if view.status in PANE_STATES:
                # Its events since its pane opened, as if played: the pane opens at the first start, a retry
                # leaves its note and the next attempt goes on in the same pane, a pause freezes it.
                self.consume(self._run_so_far(key))
                pane = self.panes.get((self.workflow or "", key))
                if pane is not None and view.status is TaskStatus.WAITING:  # waiting for a person: no pane event
                    pane.set_state("waiting")
        for pane_key in [k for k in self.panes if k not in self._seen]:  # kept, but its task had not started
            self.panes.pop(pane_key).remove()
            self._columns_stale = True
        self.choose(self.chosen)
        self._relayout()

    def _run_so_far(self, task: str) -> list[Event]:
        """The task's events since its pane would have opened (the first start after its last end) up to the current
        position, with only its last ``RESTORE_LINES`` lines of output."""
        positions, events = self._by_task.get(task, ([], []))
        mine = events[: bisect_right(positions, self.replay.position)]
        ended = next((i for i in range(len(mine) - 1, -1, -1) if mine[i].type in TASK_RUN_END_EVENTS), -1)
        start = next((i for i in range(ended + 1, len(mine)) if mine[i].type == EventType.TASK_STARTED), len(mine))
        kept: list[Event] = []
        lines = 0
        for event in reversed(mine[start:]):
            if event.type == EventType.TASK_OUTPUT:
                if lines >= RESTORE_LINES:
                    continue
                lines += len(event.output_lines)
            kept.append(event)
        kept.reverse()
        return kept

    # ---- the task chosen in the tree ---------------------------------------------------------------------------

    def choose(self, task: str | None) -> AgentPane | None:
        """Mark ``task``'s pane (the one selected in the tree); a task that has no pane now but has run gets one
        with its state and last lines. The pane of the task chosen before goes if only the choice kept it."""
        assert self.workflow is not None
        previous = self.panes.get((self.workflow, self.chosen)) if self.chosen else None
        if previous is not None and task != self.chosen:
            previous.remove_class("-chosen")
            if self._chosen_only and self.chosen not in self._ended_or_running():
                self.panes.pop((self.workflow, previous.task_key))
                if previous is self.maximised:
                    self.toggle_maximise()
                previous.remove()
                self._columns_stale = True
        if task != self.chosen:
            self._chosen_only = False
        self.chosen = task
        if task is None:
            return None
        pane = self.panes.get((self.workflow, task))
        if pane is None:
            pane = self._pane_of_finished(task)
            self._chosen_only = pane is not None
        if pane is not None:
            pane.add_class("-chosen")
        return pane

    def _ended_or_running(self) -> set[str]:
        running = {key for key, view in self.replay.state.tasks.items() if view.status in PANE_STATES}
        return running | {key for _, key in self._ended}

    def _pane_of_finished(self, task: str) -> AgentPane | None:
        """A pane for a task that is not running: its state as of now and its last lines (None if it never ran)."""
        view = self.replay.state.tasks.get(task)
        if view is None or view.started_at is None:
            return None
        assert self.workflow is not None
        pane = self._add_pane((self.workflow, task), view.agent)
        pane.set_state("running", attempt=max(1, view.attempts), at=view.started_at)
        pane.set_state(view.status.value, at=view.finished_at)
        pane.progress = view.progress
        for stream, line in self.replay.output(task, RESTORE_LINES):
            pane.add_line(line, stream)
        if view.status is TaskStatus.FAILED and view.error:
            pane.add_line(f"— failed: {view.error.strip().splitlines()[0] if view.error.strip() else ''}", "stderr")
        self._seen[(self.workflow, task)] = self.replay.seq  # what comes next is new to it
        return pane

    def render_frame(self) -> None:
        if self.chosen is not None and self.workflow is not None:
            self._ended.pop((self.workflow, self.chosen), None)  # the chosen pane stays while it is chosen
        super().render_frame()

    def toggle_chosen(self) -> AgentPane | None:
        """Give the chosen task's pane (else the first) the whole grid; again to give the grid back."""
        chosen = self.panes.get((self.workflow or "", self.chosen or ""))
        if self.maximised is not None or chosen is None:
            return self.toggle_maximise()
        self.maximised = chosen
        for key, pane in self.panes.items():
            pane.display = key[0] == self.workflow and pane is chosen
        self._relayout()
        return chosen

    def titles(self) -> list[str]:
        """The task keys of the panes on screen, in order."""
        return [pane.task_key for pane in self.visible_panes()]
