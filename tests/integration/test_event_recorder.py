"""The event recorder persists every event exactly once, even when it is closed in the middle of a flush."""

from __future__ import annotations

import asyncio

from db import connect
from db.stores import Stores
from engine.bus import InProcessBus
from engine.events import EventRecorder


async def test_closing_during_a_flush_stores_every_event_once() -> None:
    async with connect("mem://") as db:
        stores = Stores.over(db)
        for round_ in range(3):
            bus = InProcessBus(stores.events)
            recorder = EventRecorder(stores.events, bus)
            await recorder.start()
            workflow = f"wf-{round_}"
            for n in range(2_000):
                recorder.emit(workflow, "task.output", task="t", data={"line": str(n)})
            async with asyncio.timeout(10):
                while not recorder._flush_lock.locked():  # noqa: ASYNC110 - wait until an INSERT is under way
                    await asyncio.sleep(0)
            await recorder.close()  # must not raise "already exists", must not lose the tail
            stored = await stores.events.list(workflow)
            assert [e.seq for e in stored] == list(range(1, 2_001))
            await bus.close()
