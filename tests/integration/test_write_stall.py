"""Writes on embedded ``surrealkv://`` keep completing past the point where they used to hang (issue 9, point 3).

The stall: the embedded engine never flushes a surrealkv memtable, so after two full ones (1 GiB each on this
machine; about 1.24M of our output events) every write waits forever. db/_memtable_flush.py works around it by
closing and reopening the engine, which flushes, whenever the WAL passes a threshold.

The slow test writes 2.5M events in one process with the shipped settings. The fast tests cannot reproduce the
stall itself — the memtable size is not settable from Python, so the stall needs ~2 GB of writes — they check the
workaround's mechanism with a tiny threshold instead: the WAL stays bounded because memtables reach SSTables,
every write lands, and concurrent writers and a change-feed reader carry on across the reopens.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import Database, connect
from db._memtable_flush import FlushingEngine, default_flush_bytes, wal_bytes
from db.models import Event
from db.stores.surreal_core import SurrealEventStore
from db.watch import watch

BATCH = 50
# A write that has not completed in this long is stalled (a healthy one takes milliseconds).
STALL_S = 120.0


def output_events(workflow: str, first: int, count: int) -> Iterator[Event]:
    """``task.output`` events as the engine stores them: a few stdout lines each."""
    for seq in range(first, first + count):
        yield Event(
            seq=seq,
            type="task.output",
            workflow=workflow,
            task=f"task-{seq % 200}",
            agent="builder",
            data={"stream": "stdout", "lines": [f"{seq}: compiling module {seq % 977} " + "." * 60] * 3},
        )


async def write(db: Database, workflow: str, count: int, first: int = 1) -> None:
    """Append ``count`` events in batches, failing (not hanging) if one batch stalls."""
    store = SurrealEventStore(db)
    events = list(output_events(workflow, first, count))
    for start in range(0, count, BATCH):
        await asyncio.wait_for(store.append_many(events[start : start + BATCH]), STALL_S)


def flushing_engine(db: Database) -> FlushingEngine:
    engine = db.sdk._db
    assert isinstance(engine, FlushingEngine), "surrealkv:// was opened without the reopen-to-flush workaround"
    return engine


async def event_count(db: Database, workflow: str) -> int:
    return int(await db.query_one("RETURN count(SELECT id FROM event WHERE workflow = $w)", {"w": workflow}))


async def test_the_wal_stays_bounded_because_memtables_reach_sstables(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    async with connect(f"surrealkv://{store}") as db:
        engine = flushing_engine(db)
        engine.flush_bytes = 512 * 1024
        await write(db, "wf-a", 6_000)
        assert engine.reopens >= 3, f"only {engine.reopens} reopens for ~9 MB of WAL"
        # Without flushes the WAL would hold all ~9 MB; a reopen is due at most one check interval late.
        assert wal_bytes(store) < 4 * engine.flush_bytes
        assert list((store / "sstables").glob("*.sst")), "no memtable reached an SSTable"
        assert await event_count(db, "wf-a") == 6_000


async def test_concurrent_writers_and_a_changefeed_reader_carry_on_across_reopens(tmp_path: Path) -> None:
    async with connect(f"surrealkv://{tmp_path / 'state.db'}") as db:
        engine = flushing_engine(db)
        engine.flush_bytes = 256 * 1024
        seen: list[tuple[str, int]] = []

        async def read_feed() -> None:
            async for change in watch(db, "event"):
                seen.append((change.record.workflow, change.record.seq))
                if len(seen) == 4 * 1_500:
                    return

        reader = asyncio.create_task(read_feed())
        await asyncio.gather(*(write(db, f"wf-{n}", 1_500) for n in range(4)))
        await asyncio.wait_for(reader, STALL_S)
        assert engine.reopens >= 2
        assert sorted(seen) == [(f"wf-{n}", seq) for n in range(4) for seq in range(1, 1_501)]
        for n in range(4):
            assert await event_count(db, f"wf-{n}") == 1_500


async def test_a_store_reopens_to_flush_on_the_default_threshold_too(tmp_path: Path) -> None:
    """The shipped threshold is below one memtable on any machine, and a reopen keeps the data."""
    assert 0 < default_flush_bytes() <= 64 * 1024 * 1024
    store = tmp_path / "state.db"
    async with connect(f"surrealkv://{store}") as db:
        engine = flushing_engine(db)
        await write(db, "wf-a", 500)
        await engine.flush()
        assert engine.reopens == 1
        assert wal_bytes(store) < 64 * 1024, "the reopen left the WAL unflushed"
        await write(db, "wf-a", 500, first=501)
        assert await event_count(db, "wf-a") == 1_000


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
async def test_two_and_a_half_million_events_in_one_process_without_a_stall(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    total = int(os.environ.get("AGENTDECK_STALL_EVENTS", "2500000"))
    async with connect(f"surrealkv://{store}") as db:
        engine = flushing_engine(db)
        chunk = 100_000
        for first in range(1, total + 1, chunk):
            await write(db, "wf-stall", min(chunk, total - first + 1), first=first)
        assert await event_count(db, "wf-stall") == total
        # Two full memtables hold ~1.24M of these events; past that only the reopens kept writes completing.
        assert engine.reopens > 0
