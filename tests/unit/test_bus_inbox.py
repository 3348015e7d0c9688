"""A subscription's inbox: live events in order, overflow noted where it happened, overflow points merged."""

from __future__ import annotations

import asyncio

import pytest

from db.models import Event
from engine.bus._inbox import Inbox, Item, SyncKind, SyncPoint


def ev(workflow: str, seq: int) -> Event:
    return Event(seq=seq, type="task.output", workflow=workflow)


def drain(inbox: Inbox) -> list[Item]:
    async def take() -> list[Item]:
        items = []
        while len(inbox):
            item = await inbox.get()
            assert item is not None
            items.append(item)
        return items

    return asyncio.run(take())


def shape(items: list[Item]) -> list[object]:
    """Events as (workflow, seq); sync points as (kind, marks, first)."""
    return [
        (item.workflow, item.seq) if isinstance(item, Event) else (item.kind, item.marks, item.first) for item in items
    ]


def test_events_come_out_in_the_order_they_were_offered() -> None:
    inbox = Inbox(capacity=3)
    assert all(inbox.offer(ev("a", seq)) for seq in (1, 2, 3))
    assert shape(drain(inbox)) == [("a", 1), ("a", 2), ("a", 3)]


def test_a_full_inbox_drops_the_event_and_notes_the_loss_after_what_it_kept() -> None:
    inbox = Inbox(capacity=2)
    inbox.offer(ev("a", 1))
    inbox.offer(ev("a", 2))
    assert inbox.offer(ev("a", 3)) is False
    assert shape(drain(inbox)) == [("a", 1), ("a", 2), (SyncKind.OVERFLOW, {"a": 3}, {"a": 3})]


def test_consecutive_drops_merge_into_one_point_spanning_lowest_to_highest_seq_per_workflow() -> None:
    inbox = Inbox(capacity=1)
    inbox.offer(ev("a", 1))
    for dropped in (ev("a", 5), ev("b", 9), ev("a", 3), ev("a", 7), ev("b", 10)):
        assert inbox.offer(dropped) is False
    assert len(inbox) == 2  # one event, one merged point
    assert shape(drain(inbox)) == [("a", 1), (SyncKind.OVERFLOW, {"a": 7, "b": 10}, {"a": 3, "b": 9})]


def test_an_overflow_after_another_kind_of_point_is_not_merged_into_it() -> None:
    inbox = Inbox(capacity=1)
    inbox.offer(ev("a", 1))
    inbox.sync(SyncPoint(SyncKind.RECONNECT, {"a": 4}))
    inbox.offer(ev("a", 5))
    items = drain(inbox)
    assert shape(items) == [
        ("a", 1),
        (SyncKind.RECONNECT, {"a": 4}, {}),
        (SyncKind.OVERFLOW, {"a": 5}, {"a": 5}),
    ]


def test_sync_points_do_not_take_room_from_events() -> None:
    inbox = Inbox(capacity=2)
    inbox.sync(SyncPoint(SyncKind.START, {"a": 0}))
    inbox.sync(SyncPoint(SyncKind.DISCONNECTED))
    assert inbox.offer(ev("a", 1)) and inbox.offer(ev("a", 2))
    assert [item.kind if isinstance(item, SyncPoint) else item.seq for item in drain(inbox)] == [
        SyncKind.START,
        SyncKind.DISCONNECTED,
        1,
        2,
    ]


def test_taking_an_event_out_makes_room_for_another() -> None:
    inbox = Inbox(capacity=1)
    inbox.offer(ev("a", 1))
    assert shape(drain(inbox)) == [("a", 1)]
    assert inbox.offer(ev("a", 2))


async def test_a_waiting_reader_wakes_for_the_next_item_and_gets_none_once_closed() -> None:
    inbox = Inbox(capacity=4)
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.offer(ev("a", 1))
    item = await asyncio.wait_for(reader, 10)
    assert isinstance(item, Event) and item.seq == 1
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.close()
    assert await asyncio.wait_for(reader, 10) is None


def test_a_closed_inbox_drops_what_it_held_and_refuses_more() -> None:
    inbox = Inbox(capacity=2)
    inbox.offer(ev("a", 1))
    inbox.close()
    assert inbox.offer(ev("a", 2)) is False
    inbox.sync(SyncPoint(SyncKind.RECONNECT))
    assert len(inbox) == 0
    assert asyncio.run(inbox.get()) is None


def test_an_inbox_needs_room_for_one_event() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(capacity=0)
