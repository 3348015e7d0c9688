"""The event log's filter box: which events a typed needle keeps."""

from __future__ import annotations

from typing import Any

from db.models import Event, EventType
from tui.widgets.event_log import matches


def event(kind: str, task: str | None = "build", agent: str | None = "shell", **data: Any) -> Event:
    return Event(seq=1, type=kind, workflow="nightly", task=task, agent=agent, data=data)


def test_an_empty_filter_keeps_everything() -> None:
    assert matches(event(EventType.TASK_STARTED, task=None, agent=None), "")


def test_the_needle_is_found_in_type_task_agent_and_workflow_ignoring_case() -> None:
    started = event(EventType.TASK_STARTED)
    for needle in ("task.start", "STARTED", "Build", "shell", "nightly"):
        assert matches(started, needle), needle
    assert not matches(started, "deploy")


def test_output_lines_are_searched_in_both_stored_shapes() -> None:
    assert matches(event(EventType.TASK_OUTPUT, stream="stdout", lines=["compiling", "Linking FOO"]), "link")
    assert matches(event(EventType.TASK_OUTPUT, stream="stdout", line="old single line"), "single")
    assert not matches(event(EventType.TASK_OUTPUT, stream="stdout", lines=["compiling"]), "linking")


def test_data_of_other_events_is_not_searched() -> None:
    """Only output text is matched; another event's payload (an error message, say) is not."""
    failed = event(EventType.TASK_FAILED, error="disk full", lines=["disk full"])
    assert not matches(failed, "disk")
    assert matches(failed, "failed")


def test_progress_rows_are_folded_unless_the_filter_asks_for_them() -> None:
    progress = event(EventType.TASK_PROGRESS, progress=0.4)
    assert not matches(progress, "") and not matches(progress, "build")
    assert matches(progress, "progress") and matches(progress, "task.progress")


def test_a_leading_bang_keeps_failures_only_and_filters_them_further() -> None:
    failed, retrying = event(EventType.TASK_FAILED), event(EventType.TASK_RETRYING, task="lint")
    started, output = event(EventType.TASK_STARTED), event(EventType.TASK_OUTPUT, stream="stderr", lines=["boom"])
    assert [matches(e, "!") for e in (failed, retrying, started, output)] == [True, True, False, False]
    assert [matches(e, "! lint") for e in (failed, retrying)] == [False, True]
