"""A task's attempts cut from its events (engine/task_detail.py): what the task detail lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Event
from engine.task_detail import Attempts, attempts_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(seq: int, kind: str, task: str | None = "t", **data: Any) -> Event:
    return Event(seq=seq, type=kind, workflow="wf", task=task, data=data, ts=T0 + timedelta(seconds=seq))


HISTORY = [
    ev(1, "workflow.started", task=None),
    ev(2, "task.queued"),  # before the first start: no attempt of its own (it showed as "no start recorded")
    ev(3, "task.started", attempt=1),
    ev(4, "task.output", stream="stdout", lines=["one", "two"]),
    ev(5, "task.output", task="other", lines=["not mine"]),
    ev(6, "task.output", stream="stderr", lines=["bad"]),
    ev(7, "task.retrying", attempt=1, error="exit code 3\nmore"),
    ev(8, "task.started", attempt=2),
    ev(9, "task.output", lines=["three"]),
    ev(11, "task.completed", duration_s=3.0),
]


def test_each_start_begins_an_attempt_with_its_own_output_and_ending() -> None:
    first, second = attempts_of(HISTORY, "t")
    assert (first.number, first.outcome, first.error) == (1, "failed, retried", "exit code 3\nmore")
    assert first.lines == [("stdout", "one"), ("stdout", "two"), ("stderr", "bad")]
    assert first.duration_s == 4.0  # started at 3, retried at 7
    assert (second.number, second.outcome, second.lines, second.duration_s) == (
        2,
        "completed",
        [("stdout", "three")],
        3.0,
    )


def test_a_running_attempt_has_no_ending_and_live_events_extend_it_once() -> None:
    attempts = Attempts("t")
    attempts.add_all(HISTORY[:4])
    assert len(attempts.attempts) == 1
    assert attempts.attempts[-1].outcome == "running" and attempts.attempts[-1].duration_s is None
    assert attempts.add(HISTORY[3]) is None, "an event already seen (by seq) is not added twice"
    assert attempts.add(HISTORY[4]) is None, "another task's event"
    touched = attempts.add(HISTORY[5])
    assert touched is not None and touched.lines[-1] == ("stderr", "bad")


def test_a_rollback_rerun_is_a_new_attempt_after_the_old_ones() -> None:
    rerun = [*HISTORY, ev(20, "task.started", attempt=1), ev(21, "task.failed", error="x")]
    assert [(a.number, a.outcome) for a in attempts_of(rerun, "t")] == [
        (1, "failed, retried"),
        (2, "completed"),
        (1, "failed"),
    ]


def test_output_with_no_start_recorded_is_kept_and_the_newest_lines_win_a_cap() -> None:
    events = [
        ev(1, "task.output", lines=[f"l{i}" for i in range(5)]),
        ev(2, "task.started"),
        ev(3, "task.output", lines=["new"]),
    ]
    early, late = attempts_of(events, "t", max_lines=3)
    assert early.number == 0 and early.lines == [("stdout", "l3"), ("stdout", "l4")] and early.dropped == 3
    assert late.lines == [("stdout", "new")] and late.dropped == 0


def test_the_worker_that_took_an_attempt_is_noted_where_it_happened() -> None:
    taken_over = [
        ev(1, "task.started", attempt=1),
        ev(2, "task.assigned", attempt=1, worker="a:1"),
        ev(3, "task.output", lines=["half"]),
        ev(4, "task.retrying", attempt=1, error="worker a:1 stopped answering; b:2 runs it again", redelivered=True),
        ev(5, "task.assigned", attempt=1, worker="b:2"),
        ev(6, "task.output", lines=["whole"]),
        ev(7, "task.completed"),
    ]
    (only,) = attempts_of(taken_over, "t")
    assert only.lines == [
        ("worker", "on worker a:1"),
        ("stdout", "half"),
        ("worker", "worker a:1 stopped answering; b:2 runs it again"),  # not the attempt's end: it goes on
        ("worker", "on worker b:2"),
        ("stdout", "whole"),
    ]
    assert only.outcome == "completed"
