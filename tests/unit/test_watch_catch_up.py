"""A watchpoint re-armed on a resume takes the workflow's earlier events into its counts without triggering on them:
what held before does not trigger again at once, the next occurrence does, and failure windows use the events' own
times (failures an hour old are out of a ten-minute window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Event, EventType
from engine.spec.watch_expr import parse_watch
from engine.watch.evaluate import WatchEvaluator

NOW = datetime.now(UTC)


def event(seq: int, kind: str, task: str = "t", ago_s: float = 0, **data: Any) -> Event:
    return Event(workflow="wf", seq=seq, type=kind, task=task, data=data, ts=NOW - timedelta(seconds=ago_s))


def evaluator(expr: str) -> WatchEvaluator:
    return WatchEvaluator(parse_watch(expr), None, lambda outcome: None)


def test_node_runs_go_on_from_the_count_before_the_resume() -> None:
    watch = evaluator("node check runs >= 2")
    watch.catch_up(event(1, EventType.NODE_STARTED, node="check"))
    outcome = watch.observe(event(2, EventType.NODE_STARTED, node="check"))
    assert outcome is not None and outcome.held[0].values["runs"] == 2


def test_a_count_that_held_before_does_not_trigger_until_its_next_occurrence() -> None:
    watch = evaluator("tool_repeats >= 2")
    for seq in (1, 2):
        watch.catch_up(event(seq, EventType.TOOL_CALLED, tool="ls", call="same"))
    assert watch.observe(event(3, EventType.TOOL_CALLED, tool="ls", call="other")) is None
    outcome = watch.observe(event(4, EventType.TOOL_CALLED, tool="ls", call="same"))
    assert outcome is not None and outcome.held[0].values["count"] == 3


def test_failures_before_the_resume_count_within_the_window_by_their_own_time() -> None:
    recent = evaluator("failures >= 2 within 10m")
    recent.catch_up(event(1, EventType.TASK_FAILED, task="a", ago_s=60))
    assert recent.observe(event(2, EventType.TASK_FAILED, task="b")) is not None
    old = evaluator("failures >= 2 within 10m")
    old.catch_up(event(1, EventType.TASK_FAILED, task="a", ago_s=3600))
    assert old.observe(event(2, EventType.TASK_FAILED, task="b")) is None
