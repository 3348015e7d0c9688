"""Change-watching conformance: the same suite against embedded (CHANGEFEED) and a ws server (LIVE SELECT)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import Database, connect
from db.errors import QueryFailed
from db.models import Event, Workflow, WorkflowStatus
from db.stores import Stores
from db.stores._codec import to_row
from db.watch import Change, ChangefeedWatcher, LiveWatcher, watcher_for
from tests.conftest import EMBEDDED_KINDS, embedded_url, server_settings

WATCH_KINDS = ["mem", "surrealkv", "server"]


@pytest.fixture(params=WATCH_KINDS)
async def watched_db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    kind = str(request.param)
    if kind == "server":
        # Only live notifications may wake the reader here, so these tests fail if LIVE SELECT breaks.
        monkeypatch.setattr(LiveWatcher, "SAFETY_BEAT_S", 3600.0)
        url = request.getfixturevalue("surreal_server_url")
        async with connect(url, server_settings(f"watch_{uuid.uuid4().hex[:8]}")) as db:
            yield db
    else:
        async with connect(embedded_url(kind, tmp_path)) as db:
            yield db


async def collect(db: Database, table: str, since: int | None, count: int, limit_s: float = 60.0) -> list[Change]:
    """Read ``count`` changes, then close the stream (which must stop its background work)."""
    out: list[Change] = []

    async def read() -> None:
        async for change in watcher_for(db).watch(table, since):
            out.append(change)
            if len(out) >= count:
                return

    await asyncio.wait_for(read(), limit_s)
    return out


def events(workflow: str, first: int, last: int) -> list[Event]:
    return [Event(seq=seq, type="task.output", workflow=workflow, data={"n": seq}) for seq in range(first, last + 1)]


async def write_rows(db: Database, rows: list[Event]) -> None:
    """Rows in the ``event`` table (one per event, as databases before event pages hold them): the busiest
    table with a change feed there is to watch."""
    await db.query("INSERT INTO event $rows RETURN NONE", {"rows": [to_row(e, "event", e.id) for e in rows]})


async def test_the_right_watcher_for_the_database(watched_db: Database) -> None:
    expected = LiveWatcher if watched_db.kind == "server" else ChangefeedWatcher
    assert isinstance(watcher_for(watched_db), expected)


async def test_sees_updates_and_deletes_with_typed_records(watched_db: Database) -> None:
    stores = Stores.over(watched_db)
    start = await watcher_for(watched_db).position()
    reader = asyncio.create_task(collect(watched_db, "workflow", start, 3))
    workflow = await stores.workflows.create(Workflow(name="build"))
    await stores.workflows.update(workflow.id, status=WorkflowStatus.RUNNING)
    await watched_db.query("DELETE workflow WHERE id = type::record('workflow', $id)", {"id": workflow.id})
    changes = await reader
    assert [c.action for c in changes] == ["update", "update", "delete"]
    assert all(c.id == workflow.id for c in changes)
    assert isinstance(changes[0].record, Workflow)
    assert changes[0].record.status is WorkflowStatus.PENDING
    assert changes[1].record.status is WorkflowStatus.RUNNING
    assert changes[2].record is None
    assert changes[0].position < changes[1].position < changes[2].position


async def test_default_start_is_now_not_history(watched_db: Database) -> None:
    await write_rows(watched_db, events("old", 1, 5))
    await asyncio.sleep(1.2)  # outside the one-second margin that position() leaves
    reader = asyncio.create_task(collect(watched_db, "event", None, 1))
    await asyncio.sleep(0.3)  # let the watch take its starting position before the new write
    await write_rows(watched_db, events("new", 1, 1))
    (change,) = await reader
    assert change.record.workflow == "new"


async def test_resume_from_a_position_loses_nothing_across_10000_writes(watched_db: Database) -> None:
    start = await watcher_for(watched_db).position()
    for first in range(1, 10_001, 500):
        await write_rows(watched_db, events("bulk", first, first + 499))
    seen: list[int] = []
    position = start
    # Read in irregular chunks, closing the stream each time and resuming from the last position + 1,
    # as a dashboard does after a restart.
    while len(seen) < 10_000:
        remaining = 10_000 - len(seen)
        chunk = await collect(watched_db, "event", position, min(1_337, remaining))
        if len(chunk) < remaining:
            # The stream stopped inside a transaction: keep only whole ones and resume after the last of them.
            chunk = [c for c in chunk if c.position < chunk[-1].position]
        assert chunk, "a chunk larger than one transaction must hold a whole transaction"
        seen.extend(c.record.seq for c in chunk)
        position = chunk[-1].position + 1
    assert sorted(seen) == list(range(1, 10_001))
    assert len(seen) == len(set(seen)), "a resumed stream delivered a change twice"


async def test_burst_of_1000_writes_in_one_transaction_arrives_complete_and_in_order(
    watched_db: Database,
) -> None:
    start = await watcher_for(watched_db).position()
    reader = asyncio.create_task(collect(watched_db, "event", start, 1000))
    await asyncio.sleep(0.2)
    await watched_db.query(
        "BEGIN TRANSACTION; FOR $i IN 1..=1000 { CREATE event SET workflow = 'burst', seq = $i, "
        "ts = time::now(), type = 'task.output', data = {} }; COMMIT TRANSACTION;"
    )
    changes = await reader
    assert [c.record.seq for c in changes] == list(range(1, 1001))
    assert len({c.position for c in changes}) == 1, "one transaction, one position"


async def test_closing_the_stream_stops_background_work(watched_db: Database) -> None:
    before = {t for t in asyncio.all_tasks() if not t.done()}
    stream = watcher_for(watched_db).watch("workflow")

    async def first() -> Change:
        return await anext(stream)

    reader = asyncio.create_task(first())
    await asyncio.sleep(0.3)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await stream.aclose()
    await asyncio.sleep(0.1)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    assert not leftover, f"watch left tasks running: {leftover}"
    # The connection is still usable: the stream did not leave a query in flight.
    assert await watched_db.query_one("RETURN 1") == 1


async def test_unknown_table_is_refused(watched_db: Database) -> None:
    with pytest.raises(ValueError, match="no change feed"):
        await watcher_for(watched_db).watch("agent_memory").__anext__()


# Embedded databases: this process's own commits wake the watcher; the poll is only a safety net.


@pytest.fixture(params=EMBEDDED_KINDS)
async def embedded_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with connect(embedded_url(str(request.param), tmp_path)) as db:
        yield db


async def parked(db: Database, watchers: int = 1) -> None:
    """Wait until ``watchers`` streams have read the feed and are waiting for a commit."""
    while db.commits.waiting < watchers:  # noqa: ASYNC110 - nothing announces a watcher parking
        await asyncio.sleep(0.005)


async def test_a_write_after_a_quiet_spell_wakes_the_watcher_not_a_poll(embedded_db: Database) -> None:
    # The safety poll is far longer than the test waits: only the commit itself can get the change seen.
    watcher = ChangefeedWatcher(embedded_db, idle_poll_s=30.0)
    seen: asyncio.Queue[Change] = asyncio.Queue()

    async def follow() -> None:
        async for change in watcher.watch("event", await watcher.position()):
            seen.put_nowait(change)

    reader = asyncio.create_task(follow())
    try:
        for round_ in range(1, 4):
            await asyncio.wait_for(parked(embedded_db), 10)
            await write_rows(embedded_db, events("sparse", round_, round_))
            change = await asyncio.wait_for(seen.get(), 10)
            assert (change.record.workflow, change.record.seq) == ("sparse", round_)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_reads_are_not_commits_but_every_write_is(embedded_db: Database) -> None:
    # A watcher's own SHOW CHANGES must not wake the others, or idle watchers would wake each other for ever.
    before = embedded_db.commits.count
    await embedded_db.query("SHOW CHANGES FOR TABLE event SINCE 0 LIMIT 1")
    await embedded_db.query("  select * FROM workflow LIMIT 1")
    await embedded_db.query("RETURN time::now()")
    await embedded_db.query("INFO FOR DB")
    assert embedded_db.commits.count == before
    await write_rows(embedded_db, events("w", 1, 1))
    with pytest.raises(QueryFailed):
        await embedded_db.query("CREATE event SET seq = 'not a number'")  # fails, but a write may have happened
    assert embedded_db.commits.count == before + 2


async def test_concurrent_writers_in_bursts_lose_nothing_and_repeat_nothing(watched_db: Database) -> None:
    # Concurrent commits become visible out of versionstamp order; a watcher that skipped past a commit still
    # in flight lost changes here (up to 12 in 4,000 on surrealkv://, 2 in 3,000 on the server).
    watcher = watcher_for(watched_db)
    start = await watcher.position()
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for change in watcher.watch("event", start):
            seen.append((change.record.workflow, change.record.seq))
            if change.record.workflow == "sentinel":
                done.set()

    async def writer(name: str, burst: int) -> None:
        for seq in range(burst * 15 + 1, burst * 15 + 16):
            await write_rows(watched_db, events(name, seq, seq))

    reader = asyncio.create_task(follow())
    try:
        for burst in range(10):
            await asyncio.gather(*(writer(f"writer-{w}", burst) for w in range(20)))
        # Every write above has finished, so once this one is seen everything before it is visible too.
        await write_rows(watched_db, events("sentinel", 1, 1))
        await asyncio.wait_for(done.wait(), 60)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    expected = {(f"writer-{w}", seq) for w in range(20) for seq in range(1, 151)} | {("sentinel", 1)}
    assert len(seen) == len(set(seen)), "a change was delivered twice"
    assert not expected - set(seen), f"lost {len(expected - set(seen))} changes"


async def test_several_tables_are_one_stream_in_commit_order_parents_first(watched_db: Database) -> None:
    """One transaction writes a graph node, its task and their workflow, children first; quick commits follow. A
    watch over the three tables yields them by commit, and within the transaction in the order the tables are
    named (workflow, task, graph_node), whatever order the statements wrote them in."""
    from db.models import GraphNode, Task, task_record_key
    from db.stores._codec import rid

    watcher = watcher_for(watched_db)
    start = await watcher.position()
    workflow = Workflow(name="ordered")
    task = Task(workflow=workflow.id, key="build", agent="g", thread="t1")
    node = GraphNode(id=f"{workflow.id}/build/n1", workflow=workflow.id, task="build", thread="t1", node="plan")
    await watched_db.query(
        "BEGIN; INSERT INTO graph_node $n RETURN NONE; INSERT INTO task $t RETURN NONE; "
        "INSERT INTO workflow $w RETURN NONE; COMMIT;",
        {
            "n": to_row(node, "graph_node", node.id),
            "t": to_row(task, "task", task_record_key(workflow.id, "build"), drop=()),
            "w": to_row(workflow, "workflow", workflow.id),
        },
    )
    later = GraphNode(id=f"{workflow.id}/build/n2", workflow=workflow.id, task="build", thread="t2", node="plan")
    await watched_db.query("UPDATE $id SET thread = 't2'", {"id": rid("task", task_record_key(workflow.id, "build"))})
    await watched_db.query("INSERT INTO graph_node $n RETURN NONE", {"n": to_row(later, "graph_node", later.id)})
    await watched_db.query("UPDATE $id SET status = 'completed'", {"id": rid("workflow", workflow.id)})

    seen: list[Change] = []

    async def read() -> None:
        async for change in watcher.watch_many(("workflow", "task", "graph_node"), since=start):
            seen.append(change)
            if len(seen) >= 6:
                return

    await asyncio.wait_for(read(), 60)
    assert [(c.table, c.id.split("/")[-1] if c.table == "graph_node" else "") for c in seen] == [
        ("workflow", ""), ("task", ""), ("graph_node", "n1"),  # one transaction, parents first
        ("task", ""), ("graph_node", "n2"), ("workflow", ""),  # then one commit after another
    ]  # fmt: skip
    positions = [c.position for c in seen]
    assert positions == sorted(positions) and len(set(positions[:3])) == 1
