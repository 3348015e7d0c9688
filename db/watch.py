"""Change watching: an async stream of what was committed to a table, resumable from a position.

Two ways to learn that something changed, one way to read it:

* Embedded SurrealDB has no live queries in Python, so ``ChangefeedWatcher`` tails the table's CHANGEFEED
  (``SHOW CHANGES ... SINCE``). Nothing but this process writes an embedded store, so the connection's own
  commits wake it (``Database.commits``, db/_commits.py): a write after a quiet spell is read at once, reads
  under load are spaced a few milliseconds apart, and an idle watcher reads once a second, for safety only.
  ``wake_on_commit=False`` keeps the adaptive poll it replaced (5 ms while changes flow, up to 50 ms idle),
  which ``agentdeck bench`` measures next to it.
* On a server, ``LiveWatcher`` (``db._live_watch``) opens a ``LIVE SELECT`` and uses its notifications as the
  wake-up signal, then reads the same CHANGEFEED. A live query alone cannot be resumed and carries no position;
  reading the feed after each notification gives both, and a burst of notifications coalesces into one read. A
  lost connection is waited out; the live queries are registered again and the feed read on from where it was.

A position is a SurrealDB versionstamp. ``SINCE`` is inclusive, so a stream resumes from the last position
it yielded + 1; changes committed in one transaction share a position and are always yielded together.
Versionstamps are taken while a transaction commits, so concurrent ones become visible out of order: a watcher
re-reads from the start of this connection's oldest write still in flight and skips what it yielded, rather than
jumping past a commit that is about to appear behind it. That covers every writer of an embedded store; on a
server, another process's commit that becomes visible late, behind one already read, can still be missed.
Closing or cancelling the iterator stops all background work (the live query is killed).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from db.connection import Database
from db.models import Approval, Checkpoint, ControlRequest, Event, GraphNode, Task, Workflow
from db.stores._codec import from_row

WATCHED_TABLES: dict[str, tuple[type[BaseModel], bool]] = {
    # table: (model, whether the model carries the record id as ``id``)
    "workflow": (Workflow, True),
    "task": (Task, False),
    "event": (Event, True),
    "checkpoint": (Checkpoint, True),
    "control_request": (ControlRequest, True),
    "graph_node": (GraphNode, True),
    "approval": (Approval, False),
}

Action = Literal["update", "delete"]


@dataclass(frozen=True)
class Change:
    """One committed change. ``record`` is the typed row after the write (``None`` for a delete).

    A create is reported as an ``update`` of a record not seen before: the changefeed does not tell them apart.
    """

    table: str
    action: Action
    id: str
    record: Any
    position: int


@dataclass
class _Feed:
    """Where one stream stands in a table's feed.

    Every change below ``settled`` has been yielded and none can still appear there; ``delivered`` holds the
    versionstamps at or above it already yielded, so reading from ``settled`` again repeats nothing.
    """

    settled: int
    delivered: set[int] = field(default_factory=set)


def position_at_ms(unix_ms: int) -> int:
    """The versionstamp SurrealDB would give a commit at ``unix_ms`` (high bits are milliseconds)."""
    return unix_ms << 16


class ChangeWatcher(ABC):
    """Watches tables of one database. Use ``watcher_for(db)`` to get the right kind."""

    def __init__(self, db: Database, batch: int = 1000) -> None:
        self._db = db
        self._batch = batch

    async def position(self) -> int:
        """A position from which only changes committed from now on are seen (less a one-second margin).

        A snapshot read after taking this position and followed by ``watch(since=position)`` misses nothing;
        a change in the margin may be seen twice, so consumers apply changes idempotently (upserts by id).
        """
        now = await self._db.query_one("RETURN time::now()")  # the server's clock stamps the commits
        return position_at_ms(int(now.timestamp() * 1000) - 1000)

    @abstractmethod
    def watch(self, table: str, since: int | None = None) -> AsyncGenerator[Change, None]:
        """Changes to ``table`` committed at or after ``since`` (default: from now), in commit order."""

    @abstractmethod
    def watch_many(self, tables: Sequence[str], since: int | None = None) -> AsyncGenerator[Change, None]:
        """Changes to several tables as one stream in commit order: by versionstamp, and within one transaction
        in the order ``tables`` are given (list parents first: ``workflow``, ``task``, ``graph_node``). A change
        is held back until no commit before it can still appear in any of the tables (a few milliseconds while
        writes are in flight), so a consumer never sees a child before the parent committed ahead of it."""

    async def _merged_round(
        self, tables: Sequence[str], feeds: dict[str, _Feed], held: list[Change]
    ) -> tuple[list[Change], list[Change]]:
        """Read every table's feed once; returns (changes safe to yield now in commit order, changes held back)."""
        commits = self._db.commits
        bound = position_at_ms(commits.settled_ms())  # before the reads: nothing below it can still appear
        # Embedded, this connection is the only writer: if none of its writes overlapped the reads, all they
        # saw is final and nothing needs holding back (the margin below the bound would cost ~10 ms per change).
        mark = commits.quiet_mark() if self._db.sees_every_commit else None
        for table in tables:
            async with contextlib.aclosing(self._read_on(table, feeds[table])) as changes:
                async for change in changes:
                    held.append(change)
        rank = {table: index for index, table in enumerate(tables)}
        held.sort(key=lambda change: (change.position, rank[change.table]))  # stable: a feed's own order stays
        if commits.still_quiet(mark):
            return held, []
        cut = next((index for index, change in enumerate(held) if change.position >= bound), len(held))
        return held[:cut], held[cut:]

    async def _read_on(self, table: str, feed: _Feed) -> AsyncGenerator[Change, None]:
        """Read the feed from ``feed.settled`` to its current end, yielding each transaction not yielded before.

        The settled position then moves up to where no commit can still appear: below the last versionstamp
        read, and below the start of this connection's oldest write still in flight (``Database.commits``).
        """
        bound = position_at_ms(self._db.commits.settled_ms())  # before the read, so the read sees all below it
        cursor = feed.settled
        while True:
            entries = await self._entries(table, cursor)
            for versionstamp, items in entries:
                if versionstamp in feed.delivered:
                    continue
                feed.delivered.add(versionstamp)
                for change in _decode_all(table, items, versionstamp):
                    yield change
            if entries:
                cursor = entries[-1][0] + 1
            if len(entries) < self._batch:
                break
        feed.settled = max(feed.settled, min(cursor, bound))
        feed.delivered = {versionstamp for versionstamp in feed.delivered if versionstamp >= feed.settled}

    async def _entries(self, table: str, since: int) -> list[tuple[int, list[dict[str, Any]]]]:
        """One batch of the feed, undecoded: (versionstamp, changes) per transaction, in versionstamp order."""
        entries = await self._db.query_one(f"SHOW CHANGES FOR TABLE {table} SINCE {int(since)} LIMIT {self._batch}")
        return [(int(entry["versionstamp"]), entry.get("changes", [])) for entry in entries or []]


class ChangefeedWatcher(ChangeWatcher):
    """Tails CHANGEFEED (embedded databases), woken by this process's own commits.

    Args:
        wake_on_commit: Read when ``db.commits`` says a write finished. False, or a server database (where other
            processes write too), keeps the adaptive poll between ``fastest_s`` and ``slowest_s``.
        idle_poll_s: With commit wake-ups, read at least this often anyway (a safety net, not the signal).
        min_gap_s: With commit wake-ups, at most one read per this interval while writes keep coming, so a busy
            writer does not cost every watcher a read per commit; a write after a quiet spell is read at once.
    """

    def __init__(
        self,
        db: Database,
        batch: int = 1000,
        fastest_s: float = 0.005,
        slowest_s: float = 0.05,
        *,
        wake_on_commit: bool = True,
        idle_poll_s: float = 1.0,
        min_gap_s: float = 0.005,
    ) -> None:
        super().__init__(db, batch)
        self._fastest = fastest_s
        self._slowest = slowest_s
        self.wake_on_commit = wake_on_commit and db.sees_every_commit
        self._idle_poll = idle_poll_s
        self._min_gap = min_gap_s

    async def watch(self, table: str, since: int | None = None) -> AsyncGenerator[Change, None]:
        _check_table(table)
        commits = self._db.commits
        loop = asyncio.get_running_loop()
        feed = _Feed(await self.position() if since is None else since)
        delay = self._fastest
        while True:
            finished = commits.count
            read_at = loop.time()
            found = False
            async with contextlib.aclosing(self._read_on(table, feed)) as changes:
                async for change in changes:
                    found = True
                    yield change
            if self.wake_on_commit:
                await commits.wait(finished, self._idle_poll)
                # Writes keep coming: let a few gather rather than read once per commit.
                await asyncio.sleep(max(0.0, read_at + self._min_gap - loop.time()))
            else:
                delay = self._fastest if found else min(delay * 1.5, self._slowest)
                await asyncio.sleep(delay)

    async def watch_many(self, tables: Sequence[str], since: int | None = None) -> AsyncGenerator[Change, None]:
        for table in tables:
            _check_table(table)
        commits = self._db.commits
        loop = asyncio.get_running_loop()
        start = await self.position() if since is None else since
        feeds = {table: _Feed(start) for table in tables}
        held: list[Change] = []
        delay = self._fastest
        while True:
            finished = commits.count
            read_at = loop.time()
            ready, held = await self._merged_round(tables, feeds, held)
            for change in ready:
                yield change
            if held:  # a commit before them may still land: look again once it has, or in a moment
                await commits.wait(finished, self._fastest)
            elif self.wake_on_commit:
                await commits.wait(finished, self._idle_poll)
                await asyncio.sleep(max(0.0, read_at + self._min_gap - loop.time()))
            else:
                delay = self._fastest if ready else min(delay * 1.5, self._slowest)
                await asyncio.sleep(delay)


def watcher_for(db: Database) -> ChangeWatcher:
    """LIVE SELECT on servers, CHANGEFEED tailing on embedded databases; an attached dashboard's database says
    itself (``Database.watcher_factory``)."""
    if db.watcher_factory is not None:
        watcher: ChangeWatcher = db.watcher_factory(db)
        return watcher
    if db.supports_live_queries:
        from db._live_watch import LiveWatcher  # it builds on this module

        return LiveWatcher(db)
    return ChangefeedWatcher(db)


def _check_table(table: str) -> None:
    if table not in WATCHED_TABLES:
        raise ValueError(f"table {table!r} has no change feed; watchable: {', '.join(WATCHED_TABLES)}")


def _decode_all(table: str, items: list[dict[str, Any]], position: int) -> list[Change]:
    return [change for item in items if (change := _decode(table, item, position)) is not None]


def _decode(table: str, item: dict[str, Any], position: int) -> Change | None:
    model, keeps_id = WATCHED_TABLES[table]
    if "update" in item:
        row = item["update"]
        key = str(row["id"].id)
        return Change(table, "update", key, from_row(model, row, keep_id=keeps_id), position)
    if "delete" in item:
        row = item["delete"]
        record_id = row.get("id") if isinstance(row, dict) else row
        key = str(getattr(record_id, "id", record_id))
        return Change(table, "delete", key, None, position)
    return None  # schema changes (define_table) and anything newer we do not understand


def __getattr__(name: str) -> Any:
    if name == "LiveWatcher":  # defined in db._live_watch, which imports this module
        from db._live_watch import LiveWatcher

        return LiveWatcher
    raise AttributeError(name)
