"""The event vocabulary and its one describer: every ``EventType`` has a look, and the dashboard's event log and the
headless printer describe an event the same way (icon, text, style from ``tui.describe``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.text import Text

from db.models import Event, EventType
from tui.cli.headless import human_line
from tui.describe import describe, described_types, routine
from tui.widgets.event_log import event_line, event_width

TS = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)
#: What a task.retrying or workflow.started might carry: the notable keys are shown, in order, and the rest not.
DETAILS: dict[str, Any] = {"attempt": 2, "error": "boom", "delay_s": 1.5, "reason": "x", "tasks": 3, "failed": []}


def event(type: str, task: str | None = "build", **data: Any) -> Event:
    return Event(seq=1, ts=TS, type=type, workflow="wf-1", task=task, agent="sh", data=data)


def type_style(row: Text) -> str:
    """The style of the event log's type column (it starts after ``HH:MM:SS ``)."""
    return next((str(span.style) for span in row.spans if span.start <= 9 < span.end), "")


def test_every_event_type_has_a_description() -> None:
    assert described_types() == set(EventType)


def test_a_member_is_its_string_on_the_wire_and_an_unknown_type_still_loads() -> None:
    emitted = event(EventType.TASK_RETRYING, attempt=2)
    assert type(emitted.type) is str and emitted.type == "task.retrying"
    assert '"type": "task.retrying"' in json.dumps(emitted.to_json_dict())
    old = Event.model_validate({"seq": 1, "ts": TS, "type": "task.teleported", "workflow": "wf-1"})
    assert old.type == "task.teleported"
    assert describe(old).icon == "•"


# Approvals and a watchpoint's trigger print lines of their own at the command line (what to answer, how to resume);
# a watchpoint's events are put in words of their own (below), not as key=value.
WORDED = (EventType.WATCHPOINT_ADDED, EventType.WATCHPOINT_REMOVED)
SHOWN = [
    t
    for t in EventType
    if not routine(t)
    and t not in (EventType.TASK_OUTPUT, EventType.WATCHPOINT_TRIGGERED, EventType.TASK_ASSIGNED, *WORDED)
    and not t.startswith("approval.")
]


@pytest.mark.parametrize("event_type", WORDED)
def test_a_watchpoint_event_names_the_watchpoint_alike_in_the_log_and_headless(event_type: EventType) -> None:
    shown = event(event_type, watchpoint="wp-1", when="node check runs >= 2", name="loop", scope="write_code")
    look = describe(shown)
    assert look.text == "loop: node check runs >= 2 (task write_code)"
    assert human_line(shown) == f"09:30:05 {look.icon} build {event_type.split('.', 1)[1]}  {look.text}"
    assert event_line(shown).plain == f"09:30:05 {event_type:<20} build            {look.text}"


def test_a_task_taken_by_a_worker_names_the_worker_alike_in_the_log_and_headless() -> None:
    shown = event(EventType.TASK_ASSIGNED, attempt=1, worker="build-7:4242")
    assert describe(shown).text == "on worker build-7:4242"
    assert human_line(shown) == f"09:30:05 {describe(shown).icon} build assigned  on worker build-7:4242"
    assert event_line(shown).plain == f"09:30:05 {'task.assigned':<20} build            on worker build-7:4242"


@pytest.mark.parametrize("event_type", SHOWN)
def test_headless_and_the_event_log_describe_an_event_alike(event_type: EventType) -> None:
    shown = event(event_type, **DETAILS)
    look = describe(shown)
    assert look.text == "attempt=2 error=boom delay_s=1.5 reason=x"
    assert human_line(shown) == f"09:30:05 {look.icon} build {event_type.split('.', 1)[1]}  {look.text}"
    row = event_line(shown)
    assert row.plain == f"09:30:05 {event_type:<20} build            {look.text}"
    assert type_style(row) == look.style
    assert event_width(shown) == row.cell_len


def test_the_event_log_keeps_its_colours() -> None:
    styles = {t: type_style(event_line(event(t))) for t in EventType}
    assert styles[EventType.WORKFLOW_STARTED] == "cyan"
    assert styles[EventType.TASK_COMPLETED] == styles[EventType.NODE_COMPLETED] == "green3"
    assert styles[EventType.TASK_RETRYING] == "orange1"
    assert styles[EventType.APPROVAL_REQUESTED] == styles[EventType.TASK_STARTED] == ""
    assert type_style(event_line(event("custom.failed"))) == "red"  # a type of an agent's own, by its ending


def test_output_shows_its_first_line_in_both() -> None:
    chunk = event(EventType.TASK_OUTPUT, stream="stderr", lines=["one", "two"])
    assert describe(chunk).text == "one"
    assert event_line(chunk).plain.endswith(" one  (+1 lines)")
    assert human_line(chunk) == "09:30:05   build │ one\n09:30:05   build │ two"


def test_routine_events_stay_out_of_the_headless_log_but_not_the_event_log() -> None:
    for event_type in (EventType.TASK_PROGRESS, EventType.LLM_USAGE, EventType.NODE_STARTED, EventType.METRIC):
        assert human_line(event(event_type, progress=0.5)) is None
        assert event_line(event(event_type)).plain.startswith(f"09:30:05 {event_type}")
    assert event_line(event(EventType.TASK_PROGRESS, progress=0.5)).plain.endswith(" progress=0.5")


def test_approvals_use_the_described_icon() -> None:
    asked = event(EventType.APPROVAL_REQUESTED, question="ship?", default=None, deadline=None)
    icon = describe(asked).icon
    assert (human_line(asked) or "").startswith(f"09:30:05 {icon} build asks: ship?\n")
    granted = event(EventType.APPROVAL_GRANTED, value=True, by="ana")
    assert human_line(granted) == f"09:30:05 {icon} build granted: true by ana"


def test_payload_accessors_read_the_producers_shapes() -> None:
    assert event(EventType.TASK_OUTPUT, line="old").output_lines == ["old"]
    assert event(EventType.TASK_OUTPUT, lines=["a", "b"]).stream == "stdout"
    assert event(EventType.TASK_STARTED).attempt == 1
    assert event(EventType.TASK_PROGRESS, progress=0.25).progress == 0.25
    assert event(EventType.TASK_RETRYING, error=ValueError("x")).error == "x"
    assert event(EventType.APPROVAL_GRANTED, approval="wf-1/build/i1").approval_id == "wf-1/build/i1"
    assert event(EventType.APPROVAL_GRANTED).approval_id is None
