"""Evaluating one watchpoint over a workflow's events: synchronous, a few dictionary operations per event.

Each condition of the expression keeps the state it needs (a running sum, counts per call or node, a window of
failure times, a timer per running task). Two kinds of condition:

* **levels** (``cost_usd``, ``tokens``): true while the value is past the limit;
* **occurrences** (``output ~``, ``tool_repeats``, ``node … runs``, ``failures``/``retries``, ``running``): each
  new matching line, repeated call, node run, failure in the window or task crossing the duration is a new
  occurrence. Counting conditions stay true afterwards (``failures`` until the window has moved past them,
  ``running`` until the task ends); an output match is true only for the event that had it.

The watchpoint triggers when its expression becomes true, and again only after it was false, or when a condition
that holds has a new occurrence (a fourth identical tool call is news). ``WatchEvaluator.observe`` answers with an
``Outcome`` when it triggers; a ``running`` timer answers through ``on_timer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from db.models import Event, EventType
from engine.spec.watch_expr import (
    AllOf,
    AnyOf,
    Budget,
    Condition,
    Failures,
    Node,
    NodeRuns,
    OutputMatch,
    ToolRepeats,
    WatchExpr,
)
from engine.watch.conditions import (
    OCCURRED,
    BudgetState,
    FailuresState,
    Held,
    NodeRunsState,
    OutputState,
    RunningState,
    State,
    ToolRepeatsState,
)

__all__ = ["Held", "Outcome", "WatchEvaluator"]


@dataclass(frozen=True)
class Outcome:
    """The watchpoint triggered: the conditions that hold and the task it concerns (the freshest one's)."""

    held: list[Held]
    task: str | None


class WatchEvaluator:
    """One watchpoint's expression over one workflow's events.

    Args:
        expr: the parsed expression.
        task: only this task's events count (a watchpoint declared on a task); None: the whole workflow's.
        on_timer: called with the outcome when a ``running`` timer makes the watchpoint trigger.
    """

    def __init__(self, expr: WatchExpr, task: str | None, on_timer: Callable[[Outcome], None]) -> None:
        self.expr = expr
        self.task = task
        self._on_timer = on_timer
        self._states: dict[int, State] = {}
        self._by_type: dict[str, list[State]] = {}
        for cond in expr.conditions:
            state = self._make(cond)
            self._states[id(cond)] = state
            for kind in state.types:
                self._by_type.setdefault(kind, []).append(state)
        #: The event types this watchpoint reads: others are never passed to it.
        self.types = frozenset(self._by_type)
        #: The event types ``catch_up`` rebuilds its state from.
        self.history_types = frozenset(kind for state in self._states.values() if state.from_history
                                       for kind in state.types)  # fmt: skip
        self.was_true = False

    def _make(self, cond: Condition) -> State:
        if isinstance(cond, Budget):
            return BudgetState(cond)
        if isinstance(cond, OutputMatch):
            return OutputState(cond)
        if isinstance(cond, ToolRepeats):
            return ToolRepeatsState(cond)
        if isinstance(cond, NodeRuns):
            return NodeRunsState(cond)
        if isinstance(cond, Failures):
            return FailuresState(cond)
        return RunningState(cond, self._timer_fired)

    def states_of(self, kind: str) -> list[State]:
        """The states of its conditions that read events of type ``kind``."""
        return list(self._by_type.get(kind, ()))

    def observe(self, event: Event) -> Outcome | None:
        """Take one event of the workflow; the outcome if the watchpoint triggers on it."""
        if self.task is not None and event.task != self.task and event.type != EventType.WORKFLOW_ROLLED_BACK:
            return None  # a rollback is the workflow's event, and may concern the task
        states = self._by_type.get(event.type)
        if not states:
            return None
        return self._take(event, states)

    def catch_up(self, event: Event) -> None:
        """Take an event stored before this watchpoint was armed (the history of a workflow being resumed) as if it
        had been seen then, without triggering: a budget goes on from the sum spent, counts from theirs, failure
        windows by the events' own times. What held before the resume does not trigger again on its own; the next
        increment does, as it would have without the resume. Output matches and running timers are not rebuilt."""
        if self.task is not None and event.task != self.task:
            return
        states = [state for state in self._by_type.get(event.type, ()) if state.from_history]
        if states:
            self._take(event, states)  # its outcome, had it triggered, was told before the resume

    def _take(self, event: Event, states: list[State]) -> Outcome | None:
        changed = False
        fresh: set[int] = set()
        for state in states:
            effect = state.observe(event)
            if effect:
                changed = True
                if effect == OCCURRED:
                    fresh.add(id(state))
        if not changed:  # nothing the expression reads changed: its value neither
            return None
        return self._decide(fresh, event.ts.timestamp())

    def _timer_fired(self, state: State, task: str) -> None:
        outcome = self._decide({id(state)}, time.time())
        if outcome is not None:
            self._on_timer(outcome)

    def holding(self) -> Outcome | None:
        """The outcome if the expression holds now, whether or not that is news (a trigger held back while the
        workflow was paused is told on resume if it still holds; an output match holds only for its own line)."""
        return self._decide(set(), time.time(), again=True)

    def _decide(self, fresh: set[int], now: float, *, again: bool = False) -> Outcome | None:
        held: list[tuple[Held, bool]] = []
        value = self._eval(self.expr.root, fresh, now, held)
        news = any(is_fresh for _, is_fresh in held)
        triggered = value and (not self.was_true or news or again)
        self.was_true = value
        if not triggered:
            return None
        found = [h for h, _ in held]
        fresh_tasks = [h.task for h, is_fresh in held if is_fresh and h.task is not None]
        any_task = [h.task for h in found if h.task is not None]
        task = fresh_tasks[-1] if fresh_tasks else (any_task[-1] if any_task else self.task)
        return Outcome(found, task)

    def _eval(self, node: Node, fresh: set[int], now: float, held: list[tuple[Held, bool]]) -> bool:
        """Whether ``node`` holds; the conditions that hold are added to ``held`` (every branch is evaluated, so
        the event lists all of them, not only the first)."""
        if isinstance(node, AllOf | AnyOf):
            inner: list[tuple[Held, bool]] = []
            results = [self._eval(part, fresh, now, inner) for part in node.parts]
            value = all(results) if isinstance(node, AllOf) else any(results)
            if value:  # only what made it true: not the true half of a false ``and``
                held.extend(inner)
            return value
        state = self._states[id(node)]
        is_fresh = id(state) in fresh
        found = state.holds(now, is_fresh)
        if found is None:
            return False
        held.append((found, is_fresh))
        return True

    def close(self) -> None:
        for state in self._states.values():
            state.close()
