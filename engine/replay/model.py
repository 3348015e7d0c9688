"""The replay model: a recording's state at any event, fast to reach from anywhere.

``Replay(recording)`` derives every state from the recording's events (``engine.replay.state``). It keeps a
snapshot every ``snapshot_every`` events, taken once up front, so ``seek`` is a copy of the nearest snapshot at or
before the target plus at most ``snapshot_every - 1`` events applied: on a 100k-event recording a seek is about a
millisecond wherever it lands (``bench/replay_bench.py``). Stepping forward applies one event to the current state.

Positions count events applied: position 0 is before the first event, position ``len(replay)`` after the last;
the event that brought the state to position ``p`` is ``events[p - 1]``. ``position_of_seq`` maps an event's
``seq`` to the position right after it.

Output lines, metrics and the event log are not copied into snapshots: they only grow, so "so far" is a prefix
(``output``, ``metrics``, ``events``) found by bisection.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from datetime import datetime

from db.models import Event, EventType, Metric, Task
from engine.recorder.model import Recording
from engine.replay.state import ReplayState, TaskView

#: A snapshot every this many events: a seek applies at most this many minus one.
SNAPSHOT_EVERY = 256
#: Event types whose "so far" is indexed (``events_of_type_so_far``).
_INDEXED_TYPES = frozenset({EventType.LLM_USAGE})


def dependents(tasks: list[Task]) -> dict[str, list[str]]:
    """Each task's transitive dependents, in the recording's task order."""
    direct: dict[str, list[str]] = {t.key: [] for t in tasks}
    for task in tasks:
        for upstream in task.depends_on:
            direct.setdefault(upstream, []).append(task.key)
    order = {t.key: index for index, t in enumerate(tasks)}
    out: dict[str, list[str]] = {}
    for key in direct:
        seen: set[str] = set()
        stack = list(direct[key])
        while stack:
            after = stack.pop()
            if after not in seen:
                seen.add(after)
                stack.extend(direct.get(after, []))
        out[key] = sorted(seen, key=lambda k: order.get(k, len(order)))
    return out


class Replay:
    """A recording played back: the state at the current position, and moving it (``seek``, ``step``)."""

    def __init__(self, recording: Recording, snapshot_every: int = SNAPSHOT_EVERY) -> None:
        self.recording = recording
        self.events: list[Event] = sorted(recording.events, key=lambda e: e.seq)
        self.snapshot_every = max(1, snapshot_every)
        self._seqs = [e.seq for e in self.events]
        self._downstream = dependents(recording.tasks)
        self._initial = ReplayState.initial(recording.tasks)
        self._outputs: dict[str, tuple[list[int], list[tuple[str, str]]]] = {}
        self._by_type: dict[str, tuple[list[int], list[Event]]] = {}
        self._snapshots: list[ReplayState] = []
        state = self._initial.copy()
        for index, event in enumerate(self.events):
            if index % self.snapshot_every == 0:
                self._snapshots.append(state.copy())
            state.apply(event, self._downstream)
            if event.type in _INDEXED_TYPES:
                positions, of_type = self._by_type.setdefault(event.type, ([], []))
                positions.append(index + 1)
                of_type.append(event)
            if event.type == EventType.TASK_OUTPUT and event.task is not None:
                positions, lines = self._outputs.setdefault(event.task, ([], []))
                for line in event.output_lines:
                    positions.append(index + 1)
                    lines.append((event.stream, line))
        self._final = state
        self._metrics = sorted(recording.metrics, key=lambda m: m.ts)
        self._metric_ts = [m.ts for m in self._metrics]
        self.state = self._initial.copy()

    def __len__(self) -> int:
        return len(self.events)

    # ---- where we are ---------------------------------------------------------------------------------------

    @property
    def position(self) -> int:
        return self.state.position

    @property
    def at_end(self) -> bool:
        return self.state.position >= len(self.events)

    @property
    def current_event(self) -> Event | None:
        """The event that brought the state here (None before the first)."""
        return self.events[self.state.position - 1] if self.state.position else None

    @property
    def seq(self) -> int:
        """The ``seq`` of the last event applied (0 before the first)."""
        event = self.current_event
        return 0 if event is None else event.seq

    def time_at(self, position: int) -> datetime | None:
        """When the event that brought the state to ``position`` happened (None at 0)."""
        return self.events[position - 1].ts if 0 < position <= len(self.events) else None

    @property
    def start_time(self) -> datetime | None:
        return self.events[0].ts if self.events else None

    def position_of_seq(self, seq: int) -> int:
        """The position right after the last event with ``seq`` at or before ``seq``."""
        return bisect_right(self._seqs, seq)

    def position_at_time(self, when: datetime) -> int:
        """The position after the last event at or before ``when``."""
        return bisect_right([e.ts for e in self.events], when)

    # ---- moving -----------------------------------------------------------------------------------------------

    def seek(self, position: int) -> ReplayState:
        """Go to ``position`` (clamped to the recording): the nearest snapshot, then the events after it."""
        self.state = self._reach(position, from_current=True)
        return self.state

    def _reach(self, position: int, from_current: bool) -> ReplayState:
        position = max(0, min(position, len(self.events)))
        if position == len(self.events):
            return self._final.copy()
        current = self.state.position
        if from_current and current <= position < current + self.snapshot_every:
            state = self.state  # close ahead: go on from here
        else:
            state = self._snapshots[position // self.snapshot_every].copy() if self.events else self._initial.copy()
        while state.position < position:
            state.apply(self.events[state.position], self._downstream)
        return state

    def seek_seq(self, seq: int) -> ReplayState:
        """Go to right after the event ``seq``."""
        return self.seek(self.position_of_seq(seq))

    def step(self, count: int = 1) -> Event | None:
        """Apply the next event (or ``count``, or go back with a negative count); returns the last one applied."""
        if count == 1 and not self.at_end:
            event = self.events[self.state.position]
            self.state.apply(event, self._downstream)
            return event
        self.seek(self.state.position + count)
        return self.current_event

    def state_at(self, position: int) -> ReplayState:
        """The state at ``position``, leaving the current position where it is."""
        return self._reach(position, from_current=False)

    # ---- what has happened so far ------------------------------------------------------------------------------

    def events_so_far(self, limit: int | None = None) -> list[Event]:
        """The events applied so far (the newest ``limit`` of them)."""
        end = self.state.position
        start = 0 if limit is None else max(0, end - limit)
        return self.events[start:end]

    def output(self, task: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(stream, line) of what ``task`` printed so far (its last ``limit`` lines)."""
        positions, lines = self._outputs.get(task, ([], []))
        end = bisect_right(positions, self.state.position)
        start = 0 if limit is None else max(0, end - limit)
        return lines[start:end]

    def events_of_type_so_far(self, kind: str) -> list[Event]:
        """The events of one type applied so far (``llm.usage`` for the metrics panel), found by bisection."""
        positions, events = self._by_type.get(kind, ([], []))
        return events[: bisect_right(positions, self.state.position)]

    def metrics(self) -> list[Metric]:
        """The metric intervals recorded up to the current event's time (at the end: all of them, the last
        interval closes after the last event)."""
        if self.at_end:
            return list(self._metrics)
        when = self.time_at(self.state.position)
        if when is None:
            return []
        return self._metrics[: bisect_right(self._metric_ts, when)]

    # ---- checks -----------------------------------------------------------------------------------------------------

    def final_mismatches(self) -> list[str]:
        """Where the state after the last event differs from the recording's final task rows (status, attempts):
        empty when the events tell the whole story."""
        out = []
        for task in self.recording.tasks:
            view: TaskView | None = self._final.tasks.get(task.key)
            if view is None:
                out.append(f"{task.key}: not derived")
            elif view.status is not task.status or view.attempts != task.attempts:
                out.append(
                    f"{task.key}: replay {view.status.value} attempt {view.attempts}, "
                    f"recorded {task.status.value} attempt {task.attempts}"
                )
        return out

    def iter_states(self) -> Iterator[ReplayState]:
        """Every state from the start, one per event (for checks; the current position is left alone)."""
        state = self._initial.copy()
        for event in self.events:
            state.apply(event, self._downstream)
            yield state
