"""A subscription's inbox: a bounded queue of live events, with room for sync points that never overflow.

A *sync point* says "every event of these workflows up to these seqs has either been queued before me or will
never arrive live": the subscriber may then refill anything it has not seen from the store, without waiting on
live traffic that is still in flight. Transports add them when they drop an event (queue overflow), when they
know where a subscription starts (the publisher's high-water marks at subscribe time), and after a reconnect.

Only events count against the capacity, so a full inbox still records that something was lost, at the right
place in the order. Consecutive overflow points merge, so the inbox holds at most ``2 * capacity + 1`` items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from db.models import Event


class SyncKind(Enum):
    START = "start"  # where the subscription starts: the publisher's marks when it went live
    OVERFLOW = "overflow"  # the inbox was full and events were dropped
    DISCONNECTED = "disconnected"  # the transport lost its connection (no marks: it cannot know them yet)
    RECONNECT = "reconnect"  # the transport is live again


@dataclass
class SyncPoint:
    kind: SyncKind
    marks: dict[str, int] = field(default_factory=dict)  # workflow -> highest seq published before this point
    first: dict[str, int] = field(default_factory=dict)  # OVERFLOW: workflow -> lowest seq dropped


Item = Event | SyncPoint


class Inbox:
    """Single-consumer queue fed synchronously by a transport (``offer``/``sync``), drained by ``get``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("queue_size must be at least 1")
        self.capacity = capacity
        self._items: deque[Item] = deque()
        self._events = 0
        self._signal = asyncio.Event()
        self._closed = False

    def offer(self, event: Event) -> bool:
        """Queue a live event; on overflow drop it, note it in a sync point, and return False."""
        if self._closed:
            return False
        if self._events >= self.capacity:
            self.sync(SyncPoint(SyncKind.OVERFLOW, {event.workflow: event.seq}, {event.workflow: event.seq}))
            return False
        self._items.append(event)
        self._events += 1
        self._signal.set()
        return True

    def sync(self, point: SyncPoint) -> None:
        """Queue a sync point after everything queued so far (merging with an overflow point at the tail)."""
        if self._closed:
            return
        tail = self._items[-1] if self._items else None
        if point.kind is SyncKind.OVERFLOW and isinstance(tail, SyncPoint) and tail.kind is SyncKind.OVERFLOW:
            for workflow, seq in point.marks.items():
                tail.marks[workflow] = max(seq, tail.marks.get(workflow, 0))
            for workflow, seq in point.first.items():
                tail.first[workflow] = min(seq, tail.first.get(workflow, seq))
        else:
            self._items.append(point)
        self._signal.set()

    async def get(self) -> Item | None:
        """The next item, waiting for one; ``None`` once the inbox is closed."""
        while not self._items:
            if self._closed:
                return None
            self._signal.clear()
            await self._signal.wait()
        if self._closed:
            return None
        item = self._items.popleft()
        if isinstance(item, Event):
            self._events -= 1
        return item

    def close(self) -> None:
        """Drop what is queued and wake the consumer, whose ``get`` then returns ``None``."""
        self._closed = True
        self._items.clear()
        self._events = 0
        self._signal.set()

    def __len__(self) -> int:
        return len(self._items)
