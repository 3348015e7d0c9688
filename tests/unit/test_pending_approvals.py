"""The dashboard's pending approvals: what it offers a person next, and what it forgets once answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Approval, Event, EventType
from tui.pending_approvals import PendingApprovals, approval_from_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def approval(workflow: str, task: str, interrupt: str, minute: int) -> Approval:
    return Approval(workflow=workflow, task=task, interrupt=interrupt, created_at=T0 + timedelta(minutes=minute))


def event(kind: EventType, workflow: str, task: str | None, interrupt: str, minute: int, **data: Any) -> Event:
    return Event(
        seq=minute,
        type=kind,
        workflow=workflow,
        task=task,
        ts=T0 + timedelta(minutes=minute),
        data={"approval": f"{workflow}/{task}/{interrupt}", **data},
    )


def test_a_request_event_becomes_the_approval_it_announces() -> None:
    deadline = (T0 + timedelta(hours=1)).isoformat()
    requested = event(
        EventType.APPROVAL_REQUESTED, "wf", "review", "i-1", 3, node="check", prompt="Ship it?", default=False,
        deadline=deadline,
    )  # fmt: skip
    got = approval_from_event(requested)
    assert got is not None
    assert (got.id, got.interrupt, got.node, got.prompt, got.default) == (
        "wf/review/i-1",
        "i-1",
        "check",
        "Ship it?",
        False,
    )
    assert got.deadline == T0 + timedelta(hours=1)
    assert got.created_at == requested.ts


def test_a_request_without_a_task_or_an_approval_id_is_no_approval() -> None:
    assert approval_from_event(event(EventType.APPROVAL_REQUESTED, "wf", None, "i-1", 0)) is None
    assert approval_from_event(Event(seq=1, type=EventType.APPROVAL_REQUESTED, workflow="wf", task="t")) is None


def test_the_oldest_waiting_approval_is_shown_first_and_the_current_workflow_before_others() -> None:
    pending = PendingApprovals()
    pending.add([approval("b", "t", "late", 5), approval("a", "t", "old", 1), approval("b", "t", "early", 2)])
    assert len(pending) == 3
    shown = pending.next_to_show()
    assert shown is not None and shown.id == "a/t/old"
    shown = pending.next_to_show(workflow="b")
    assert shown is not None and shown.id == "b/t/early"
    shown = pending.next_to_show(workflow="elsewhere")  # nothing there: the oldest of all
    assert shown is not None and shown.id == "a/t/old"


def test_put_off_approvals_are_skipped_until_brought_back() -> None:
    pending = PendingApprovals()
    pending.add([approval("wf", "t", "first", 1), approval("wf", "t", "second", 2)])
    pending.put_off("wf/t/first")
    shown = pending.next_to_show()
    assert shown is not None and shown.id == "wf/t/second"
    pending.put_off("wf/t/second")
    assert pending.next_to_show() is None
    assert len(pending) == 2  # put off, still waiting: the count still shows them
    pending.bring_back()
    shown = pending.next_to_show()
    assert shown is not None and shown.id == "wf/t/first"


def test_putting_off_an_unknown_approval_changes_nothing() -> None:
    pending = PendingApprovals()
    pending.put_off("wf/t/nobody")
    pending.add([approval("wf", "t", "nobody", 1)])
    shown = pending.next_to_show()
    assert shown is not None and shown.id == "wf/t/nobody"


def test_events_add_requests_and_answers_remove_them_and_are_reported() -> None:
    pending = PendingApprovals()
    answers = pending.consume(
        [
            event(EventType.APPROVAL_REQUESTED, "wf", "a", "i-1", 1, prompt="one?"),
            event(EventType.APPROVAL_REQUESTED, "wf", "b", "i-2", 2, prompt="two?"),
            event(EventType.TASK_STARTED, "wf", "c", "x", 3),  # not about approvals: ignored
            event(EventType.APPROVAL_GRANTED, "wf", "a", "i-1", 4, value=True),
        ]
    )
    assert answers == [("wf/a/i-1", {"approval": "wf/a/i-1", "value": True, "status": "granted"})]
    assert len(pending) == 1
    shown = pending.next_to_show()
    assert shown is not None and shown.id == "wf/b/i-2"
    for kind, status in [(EventType.APPROVAL_DENIED, "denied"), (EventType.APPROVAL_ANSWERED, "answered")]:
        [(approval_id, data)] = pending.consume([event(kind, "wf", "b", "i-2", 5)])
        assert (approval_id, data["status"]) == ("wf/b/i-2", status)
    assert len(pending) == 0


def test_a_stale_load_does_not_bring_back_an_answered_approval() -> None:
    """The start-up load may have read the approval before its answer arrived on the bus."""
    pending = PendingApprovals()
    pending.consume([event(EventType.APPROVAL_GRANTED, "wf", "t", "i-1", 2)])
    pending.add([approval("wf", "t", "i-1", 1)])
    assert len(pending) == 0
    assert pending.next_to_show() is None


def test_an_approval_loaded_and_then_announced_again_is_counted_once() -> None:
    pending = PendingApprovals()
    pending.add([approval("wf", "t", "i-1", 1)])
    pending.consume([event(EventType.APPROVAL_REQUESTED, "wf", "t", "i-1", 1)])
    assert len(pending) == 1


def test_an_answered_approval_that_was_put_off_is_gone_for_good() -> None:
    pending = PendingApprovals()
    pending.add([approval("wf", "t", "i-1", 1)])
    pending.put_off("wf/t/i-1")
    pending.answered("wf/t/i-1")
    pending.bring_back()
    assert pending.next_to_show() is None
    assert len(pending) == 0
