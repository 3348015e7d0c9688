"""The conditions of a watch expression, each with the state it keeps over a workflow's events.

``engine.watch.evaluate`` combines them into one watchpoint's value. Each state's ``observe`` says what an event did
to its condition (``SAME``, ``CHANGED``, ``OCCURRED``) and ``holds`` whether it holds now, with the values that make
it true (a ``Held``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import regex

from db.models import Event, EventType
from engine.spec.watch_expr import Budget, Failures, NodeRuns, OutputMatch, Running, ToolRepeats

__all__ = [
    "CHANGED",
    "OCCURRED",
    "REGEX_TIMEOUT_S",
    "SAME",
    "BudgetState",
    "FailuresState",
    "Held",
    "NodeRunsState",
    "OutputState",
    "RegexTimeout",
    "RunningState",
    "State",
    "ToolRepeatsState",
]

_SHOWN_LINE = 500  # characters of a matching output line the event carries
#: The longest an output watchpoint may search one chunk of output (then it gives up: ``RegexTimeout``).
REGEX_TIMEOUT_S = 0.05


class RegexTimeout(Exception):
    """An output watchpoint's regex took longer than ``REGEX_TIMEOUT_S`` on one chunk of output: it backtracks too
    much on such lines (``(a+)+$`` on a long line) and would take as long on each; the manager disarms it."""

    def __init__(self, condition: str) -> None:
        super().__init__(
            f"its regex took longer than {REGEX_TIMEOUT_S * 1000:g} ms to search one chunk of output "
            "(it backtracks too much); disarmed"
        )
        self.condition = condition


@dataclass(frozen=True)
class Held:
    """A condition that holds, and the values that make it true."""

    condition: str
    kind: str
    values: dict[str, Any]
    task: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"condition": self.condition, "kind": self.kind, "values": self.values, "task": self.task}


#: What an event did to a condition (``State.observe``): nothing, changed its value, or was a new occurrence.
SAME, CHANGED, OCCURRED = 0, 1, 2


@dataclass
class State:
    """What one condition knows; ``observe`` says what the event did to it (``SAME``, ``CHANGED``, ``OCCURRED``)."""

    types: frozenset[str] = field(default=frozenset(), init=False)
    #: Rebuilt from the events stored before a resume (``WatchEvaluator.catch_up``): counts and sums are; an output
    #: match (true only for its own line) and a running timer (no task runs when a workflow is adopted) are not.
    from_history = True

    def observe(self, event: Event) -> int:
        raise NotImplementedError

    def holds(self, now: float, fresh: bool) -> Held | None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what runs on its own (timers)."""


class BudgetState(State):
    def __init__(self, cond: Budget) -> None:
        self.cond = cond
        self.types = frozenset({EventType.LLM_USAGE})
        self.total = 0.0
        self.task: str | None = None
        self.key = "cost_usd" if cond.measure == "cost_usd" else "total_tokens"

    def observe(self, event: Event) -> int:
        value = event.data.get(self.key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            was = self.cond.passes(self.total)
            self.total += value
            self.task = event.task
            return CHANGED if self.cond.passes(self.total) != was else SAME  # the level changes when it crosses
        return SAME

    def holds(self, now: float, fresh: bool) -> Held | None:
        if not self.cond.passes(self.total):
            return None
        shown: float = round(self.total, 6) if self.cond.measure == "cost_usd" else int(self.total)
        return Held(self.cond.text, self.cond.measure, {self.cond.measure: shown, "limit": self.cond.limit}, self.task)


class OutputState(State):
    from_history = False

    def __init__(self, cond: OutputMatch) -> None:
        self.cond = cond
        self.types = frozenset({EventType.TASK_OUTPUT})
        self.hit: Held | None = None
        # A chunk's lines are searched at once, joined, with ^ and $ at line ends; only a chunk with a match is
        # searched line by line (a match across lines is not one). \A and \Z mean the line's ends: per line only.
        source = cond.pattern.pattern
        self._chunk_search = None if "\\A" in source or "\\Z" in source else _multiline(cond.pattern).search

    def observe(self, event: Event) -> int:
        lines = event.data.get("lines")
        if not isinstance(lines, list) or not lines:
            return SAME
        # At most REGEX_TIMEOUT_S of searching (CPU) per chunk: a pattern that backtracks for ever on a line must not
        # block the event loop (every workflow of the engine); the manager then disarms the watchpoint.
        spent = [0.0]  # CPU seconds inside this chunk's searches
        try:
            chunk = self._chunk_search
            if chunk is not None and _bounded(chunk, _joined(event, lines), spent) is None:
                return SAME
            search = self.cond.pattern.search
            for line in lines:
                if isinstance(line, str) and _bounded(search, line, spent) is not None:
                    stream = event.data.get("stream")
                    values = {"line": line[:_SHOWN_LINE], "stream": stream, "pattern": self.cond.pattern.pattern}
                    self.hit = Held(self.cond.text, "output", values, event.task)
                    return OCCURRED
        except TimeoutError:
            raise RegexTimeout(self.cond.text) from None
        return SAME

    def holds(self, now: float, fresh: bool) -> Held | None:
        return self.hit if fresh else None  # a match is true for the event that had it


class ToolRepeatsState(State):
    def __init__(self, cond: ToolRepeats) -> None:
        self.cond = cond
        self.types = frozenset({EventType.TOOL_CALLED})
        self.counts: dict[tuple[str | None, str, str], int] = {}
        self.hit: Held | None = None

    def observe(self, event: Event) -> int:
        tool = str(event.data.get("tool", ""))
        key = (event.task, tool, str(event.data.get("call") or event.data.get("args")))
        count = self.counts[key] = self.counts.get(key, 0) + 1
        if not self.cond.passes(count):
            return SAME
        values = {"tool": tool, "args": event.data.get("args"), "count": count, "limit": int(self.cond.limit)}
        self.hit = Held(self.cond.text, "tool_repeats", values, event.task)
        return OCCURRED

    def holds(self, now: float, fresh: bool) -> Held | None:
        return self.hit


class NodeRunsState(State):
    def __init__(self, cond: NodeRuns) -> None:
        self.cond = cond
        self.types = frozenset({EventType.NODE_STARTED})
        self.counts: dict[str | None, int] = {}
        self.hit: Held | None = None

    def observe(self, event: Event) -> int:
        if event.data.get("node") != self.cond.node:
            return SAME
        count = self.counts[event.task] = self.counts.get(event.task, 0) + 1
        if not self.cond.passes(count):
            return SAME
        values = {"node": self.cond.node, "runs": count, "limit": int(self.cond.limit)}
        self.hit = Held(self.cond.text, "node_runs", values, event.task)
        return OCCURRED

    def holds(self, now: float, fresh: bool) -> Held | None:
        return self.hit


class FailuresState(State):
    def __init__(self, cond: Failures) -> None:
        self.cond = cond
        self.types = frozenset({EventType.TASK_FAILED if cond.kind == "failures" else EventType.TASK_RETRYING})
        self.times: deque[tuple[float, str | None]] = deque()

    def _prune(self, now: float) -> None:
        window = self.cond.window_s
        if window is not None:
            while self.times and self.times[0][0] < now - window:
                self.times.popleft()

    def observe(self, event: Event) -> int:
        now = event.ts.timestamp()
        was = self.cond.passes(len(self.times))
        self.times.append((now, event.task))
        self._prune(now)
        if self.cond.passes(len(self.times)):
            return OCCURRED
        return CHANGED if was else SAME

    def holds(self, now: float, fresh: bool) -> Held | None:
        self._prune(now)
        if not self.cond.passes(len(self.times)):
            return None
        tasks = sorted({task for _, task in self.times if task is not None})
        values: dict[str, Any] = {self.cond.kind: len(self.times), "limit": int(self.cond.limit), "tasks": tasks}
        if self.cond.window_s is not None:
            values["within_s"] = self.cond.window_s
        return Held(self.cond.text, self.cond.kind, values, self.times[-1][1] if self.times else None)


_TASK_ENDS = frozenset(
    {EventType.TASK_COMPLETED, EventType.TASK_FAILED, EventType.TASK_CANCELLED, EventType.TASK_SKIPPED,
     EventType.TASK_RETRYING}
)  # fmt: skip


class RunningState(State):
    """A timer per running task attempt; paused time does not count (the clock stops at ``task.paused``)."""

    from_history = False

    def __init__(self, cond: Running, fired: Callable[[RunningState, str], None]) -> None:
        self.cond = cond
        self.types = frozenset(
            {EventType.TASK_STARTED, EventType.TASK_PAUSED, EventType.TASK_RESUMED, EventType.WORKFLOW_ROLLED_BACK,
             *_TASK_ENDS}
        )  # fmt: skip
        self._fired = fired
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._left: dict[str, float] = {}  # a paused task's time left before it crosses the limit
        self.over: dict[str, float] = {}  # tasks past the limit: the loop time they crossed it

    def observe(self, event: Event) -> int:
        task = event.task
        kind = event.type
        if kind == EventType.WORKFLOW_ROLLED_BACK:
            # A rollback sends running tasks back to pending with no end event of their own: their attempt is over.
            rerun = event.data.get("rerun")
            gone = [t for t in {*self._timers, *self._left, *self.over} if not isinstance(rerun, list) or t in rerun]
            was_over = False
            for key in gone:
                self._stop(key)
                was_over = self.over.pop(key, None) is not None or was_over
            return CHANGED if was_over else SAME
        if task is None:
            return SAME
        if kind == EventType.TASK_STARTED:
            self._stop(task)
            was_over = self.over.pop(task, None) is not None
            self._arm(task, self.cond.limit)
            return CHANGED if was_over else SAME
        elif kind == EventType.TASK_PAUSED:
            timer = self._timers.pop(task, None)
            if timer is not None:
                timer.cancel()
                self._left[task] = max(0.0, timer.when() - asyncio.get_running_loop().time())
        elif kind == EventType.TASK_RESUMED:
            left = self._left.pop(task, None)
            if left is not None:
                self._arm(task, left)
        else:  # the attempt ended
            self._stop(task)
            if self.over.pop(task, None) is not None:
                return CHANGED
        return SAME

    def _arm(self, task: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers[task] = loop.call_later(delay, self._cross, task)

    def _cross(self, task: str) -> None:
        self._timers.pop(task, None)
        self.over[task] = asyncio.get_running_loop().time()
        self._fired(self, task)

    def _stop(self, task: str) -> None:
        timer = self._timers.pop(task, None)
        if timer is not None:
            timer.cancel()
        self._left.pop(task, None)

    def holds(self, now: float, fresh: bool) -> Held | None:
        if not self.over:
            return None
        task = max(self.over, key=self.over.__getitem__)  # the latest to cross
        values = {"task": task, "limit_s": self.cond.limit}
        return Held(self.cond.text, "running", values, task)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._left.clear()


class OutputScreen:
    """One search of an output chunk for all of a workflow's output patterns at once, in one alternation: when it
    finds nothing (the common case) none of them can match, and no watchpoint searches the chunk on its own.

    With several output watchpoints, each search's time limit costs more than the search (the regex package sets
    one up per call): one search instead of one per pattern. Only patterns that mean the same inside an alternation
    are screened: no inline flags or groups of their own (``(?i)``, named groups), no backreferences, no ``\\A`` or
    ``\\Z`` (they mean a line's ends here); the others are searched as before.
    """

    def __init__(self, patterns: list[regex.Pattern[str]]) -> None:
        self.sources = frozenset(p.pattern for p in patterns)
        self._search = regex.compile("|".join(f"(?:{p.pattern})" for p in patterns), regex.MULTILINE).search

    @staticmethod
    def screenable(pattern: regex.Pattern[str]) -> bool:
        source = pattern.pattern
        return (
            not pattern.flags & ~(regex.VERSION0 | regex.UNICODE)
            and source.replace("(?:", "").find("(?") < 0
            and not regex.search(r"\\(?:\d|g|A|Z)", source)
        )

    def clear(self, event: Event, lines: list[Any]) -> bool:
        """Whether no screened pattern can match in this chunk (a search that runs out of time says maybe)."""
        try:
            return _bounded(self._search, _joined(event, lines), [0.0]) is None
        except TimeoutError:
            return False  # one of them backtracks: each is searched on its own, and that one is found out


def _multiline(pattern: regex.Pattern[str]) -> regex.Pattern[str]:
    return regex.compile(pattern.pattern, pattern.flags | regex.MULTILINE)


def _bounded(search: Callable[..., Any], text: str, spent: list[float]) -> Any:
    """``search(text)`` within what is left of the chunk's budget of CPU time (``spent[0]``: used by its searches
    so far), holding the GIL.

    By default the regex package lets go of the GIL while it matches: with busy Python threads about (sync steps),
    taking it back cost 1-20 ms a search, and the wall-clock timeout ran out on plain patterns like "Traceback",
    which were then disarmed (seen in ``agentdeck bench --only watchpoints``). Held (``concurrent=False``), a search
    costs what re's does. The timeout is wall time, which can still run out while the process waits for the CPU or
    collects garbage: then the search is tried again, its CPU time measured, and only a search that really spent the
    budget gives up (the common search, which finds nothing at once, pays for no clock)."""
    left = REGEX_TIMEOUT_S - spent[0]
    try:
        return search(text, timeout=max(left, 0.001), concurrent=False)
    except TimeoutError:
        pass
    while True:
        left = REGEX_TIMEOUT_S - spent[0]
        if left <= 0:
            raise TimeoutError
        began = time.thread_time()
        try:
            return search(text, timeout=max(left, 0.001), concurrent=False)
        except TimeoutError:
            if spent[0] + time.thread_time() - began >= REGEX_TIMEOUT_S:
                raise
        finally:
            spent[0] += time.thread_time() - began


# The event itself, not its id: a freed event's address is soon a new event's, which then read as the old text.
_last_joined: tuple[Event | None, str] = (None, "")


def _joined(event: Event, lines: list[Any]) -> str:
    """The chunk's lines as one text, joined once per event for all the watchpoints that search it."""
    global _last_joined
    if _last_joined[0] is not event:
        _last_joined = (event, "\n".join(line for line in lines if isinstance(line, str)))
    return _last_joined[1]
