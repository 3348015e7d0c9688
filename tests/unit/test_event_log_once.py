"""The event log lists an event once, whichever way it arrives first: live from the bus, or in the history read
from the event table (an event is stored before it is published, so a history read can already hold it)."""

from __future__ import annotations

from db.models import Event, EventType
from tui.widgets.event_log import KEEP, EventLog


def event(seq: int, workflow: str = "wf-1") -> Event:
    return Event(seq=seq, type=EventType.TASK_OUTPUT, workflow=workflow, task="t", data={"lines": [f"line {seq}"]})


def test_an_event_in_the_history_and_then_live_is_listed_once() -> None:
    log = EventLog()
    log.load_history([event(1), event(2)])
    log.consume([event(2), event(3)])  # 2 was in the history already
    assert [(e.workflow, e.seq) for e in log.events] == [("wf-1", 1), ("wf-1", 2), ("wf-1", 3)]
    log.load_history([event(3), event(4)])  # and the other way round
    assert [e.seq for e in log.events] == [1, 2, 3, 4]
    log.consume([event(1, workflow="wf-2")])  # the same seq in another workflow is another event
    assert len(log.events) == 5


def test_an_event_that_left_the_bounded_log_may_come_back() -> None:
    log = EventLog()
    log.consume([event(n) for n in range(1, KEEP + 2)])  # one more than it keeps: seq 1 is dropped
    assert len(log.events) == KEEP and log.events[0].seq == 2
    log.consume([event(1)])
    assert log.events[-1].seq == 1, "forgotten when it left, so it is not taken for a duplicate"
