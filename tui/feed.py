"""The event feed: one bus subscription for the whole dashboard, drained by widgets at a bounded frame rate.

The engine publishes into the bus without waiting (bounded queues), so a flood of output never slows it; here the
events are appended to a bounded buffer, and the main screen drains it once a frame (about 20 a second) and
publishes the batch to the widgets through a Textual ``Signal``, which drops a widget once it is removed.
Nothing in the engine ever awaits rendering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from db.models import Event
from engine.bus import EventBus, GapNotice, Subscription

BUFFER = 50_000


class EventFeed:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._pending: deque[Event] = deque(maxlen=BUFFER)
        self._task: asyncio.Task[None] | None = None
        self.notices: deque[str] = deque(maxlen=20)
        self.latencies: deque[float] = deque(maxlen=2_000)  # event timestamp → handed to the screen, seconds
        self.received = 0

    async def start(self) -> None:
        if self._task is None:
            subscription = self._bus.subscribe(on_notice=self._on_notice)
            self._task = asyncio.create_task(self._pump(subscription), name="agentdeck-ui-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notice(self, notice: GapNotice) -> None:
        self.notices.append(str(notice))

    async def _pump(self, subscription: Subscription) -> None:
        async with subscription as events:
            async for event in events:
                self._pending.append(event)
                self.received += 1

    def drain(self) -> list[Event]:
        """Every event received since the last frame, oldest first (called by the UI's frame timer)."""
        if not self._pending:
            return []
        batch = list(self._pending)
        self._pending.clear()
        now = time.time()
        for event in batch[-200:]:
            self.latencies.append(max(0.0, now - event.ts.timestamp()))
        return batch
