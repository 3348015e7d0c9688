"""The event recorder and the state writer under it: every event stored exactly once, published only after it is
stored, output chunked with every line kept, and output held back while it is not stored yet."""

from __future__ import annotations

import asyncio

from db import connect
from db.models import Event
from db.stores import StateBatch, StateBatchStore, Stores
from engine.bus import InProcessBus
from engine.events import EventRecorder, OutputLimits, output_lines
from engine.writer import StateWriter


class _Watched(StateBatchStore):
    """The real SurrealDB batch store, noting which events a finished ``apply`` stored and whether one is under way."""

    def __init__(self, inner: StateBatchStore) -> None:
        self.inner = inner
        self.stored: set[str] = set()
        self.applying = asyncio.Event()

    async def apply(self, batch: StateBatch) -> None:
        self.applying.set()
        await self.inner.apply(batch)
        self.stored.update(event.id for event in batch.events)


async def test_closing_during_a_write_stores_every_event_once() -> None:
    async with connect("mem://") as db:
        stores = Stores.over(db)
        for round_ in range(3):
            bus = InProcessBus(stores.events)
            watched = _Watched(stores.state)
            recorder = EventRecorder(StateWriter(watched), bus, stores.events)
            await recorder.start()
            workflow = f"wf-{round_}"
            for n in range(2_000):
                recorder.emit(workflow, "task.progress", task="t", data={"n": n})
            async with asyncio.timeout(10):
                await watched.applying.wait()  # a batch is being written
            await recorder.close()  # must not lose the tail, must not store anything twice
            stored = await stores.events.list(workflow)
            assert [e.seq for e in stored] == list(range(1, 2_001))
            await bus.close()


async def test_an_event_is_published_only_once_it_is_stored() -> None:
    async with connect("mem://") as db:
        stores = Stores.over(db)
        bus = InProcessBus(stores.events)
        watched = _Watched(stores.state)
        recorder = EventRecorder(StateWriter(watched), bus, stores.events)
        await recorder.start()
        early: list[Event] = []
        heard: list[Event] = []

        def listener(event: Event) -> None:
            heard.append(event)
            if event.id not in watched.stored:
                early.append(event)

        recorder.add_listener(listener)
        subscription = bus.subscribe("wf")
        await subscription.wait_ready()
        for n in range(500):
            recorder.emit("wf", "task.progress", task=f"t{n % 7}", data={"n": n})
            if n % 50 == 0:
                await asyncio.sleep(0)  # let batches go while we emit
        await recorder.flush()
        received = []
        async with asyncio.timeout(10):
            async for event in subscription:
                assert event.id in watched.stored, f"seq {event.seq} reached a subscriber before it was stored"
                received.append(event.seq)
                if event.seq == 500:
                    break
        assert received == list(range(1, 501))
        assert [e.seq for e in heard] == list(range(1, 501))
        assert early == []
        await subscription.close()
        await recorder.close()
        await bus.close()


async def test_output_is_chunked_keeping_every_line_in_order_around_other_events() -> None:
    async with connect("mem://") as db:
        stores = Stores.over(db)
        bus = InProcessBus(stores.events)
        recorder = EventRecorder(StateWriter(stores.state), bus, stores.events)
        await recorder.start()
        for n in range(5_000):
            recorder.output("wf", "a", "builder", "stdout", [f"a {n}"])
            if n % 1_000 == 999:
                recorder.output("wf", "a", "builder", "stderr", [f"warning after {n}"])
                recorder.emit("wf", "task.progress", task="a", data={"progress": n / 5_000})
            if n % 97 == 0:
                recorder.output("wf", "b", "builder", "stdout", [f"b {n}"])
                await asyncio.sleep(0)
        recorder.emit("wf", "task.completed", task="a")
        await recorder.flush()
        stored = await stores.events.list("wf")
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        a_events = [e for e in stored if e.task == "a"]
        a_lines = [(e.data.get("stream"), line) for e in a_events for line in output_lines(e)]
        expected: list[tuple[str, str]] = []
        for n in range(5_000):
            expected.append(("stdout", f"a {n}"))
            if n % 1_000 == 999:
                expected.append(("stderr", f"warning after {n}"))
        assert a_lines == expected
        outputs = [e for e in a_events if e.type == "task.output"]
        assert len(outputs) < 500, "lines were not gathered into chunks"
        # Each progress event comes right after the lines printed before it; the completion comes last.
        kinds = [e.type for e in a_events]
        assert kinds[-1] == "task.completed"
        for index, event in enumerate(a_events):
            if event.type == "task.progress":
                assert output_lines(a_events[index - 1])[-1].startswith("warning after")
        b_lines = [line for e in stored if e.task == "b" for line in output_lines(e)]
        assert b_lines == [f"b {n}" for n in range(0, 5_000, 97)]
        await recorder.close()
        await bus.close()


async def test_a_task_printing_faster_than_the_store_is_held_until_its_output_is_stored() -> None:
    async with connect("mem://") as db:
        stores = Stores.over(db)
        bus = InProcessBus(stores.events)
        limits = OutputLimits(task_high=64 * 1024, task_low=16 * 1024, total_high=1 << 30, total_low=1 << 29)
        recorder = EventRecorder(StateWriter(stores.state), bus, stores.events, limits)
        await recorder.start()
        line = "x" * 200
        held = 0
        printed = 0
        async with asyncio.timeout(60):
            while printed < 20_000:
                # What a sandbox does: print while the recorder keeps up, wait when it says so.
                backlog = recorder.output_backlog("wf", "flood")
                if backlog is not None:
                    held += 1
                    assert recorder.backlogged("wf", "flood")
                    await backlog
                    assert recorder.output_backlog("wf", "flood") is None  # released below the low mark
                    continue
                recorder.output("wf", "flood", "builder", "stdout", [f"{printed} {line}"])
                printed += 1
                assert recorder.output_backlog_bytes <= 64 * 1024 + 300  # never far past the high mark
        assert held > 0
        await recorder.flush()
        stored = [line for e in await stores.events.list("wf") for line in output_lines(e)]
        assert [int(text.split()[0]) for text in stored] == list(range(20_000))
        await recorder.close()
        await bus.close()
