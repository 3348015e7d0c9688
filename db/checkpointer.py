"""A LangGraph checkpointer over SurrealDB: ``graph.compile(checkpointer=SurrealSaver(db))``.

``SurrealSaver`` keeps LangGraph checkpoints and pending writes in the ``lg_checkpoint`` and ``lg_write`` tables
(migration 0004) of the database the rest of agentdeck uses, so a graph's history lives next to the workflow
that ran it and the dashboard can follow it through the ``lg_checkpoint`` changefeed. It is async first, like
langgraph's ``AsyncSqliteSaver``: the sync methods work only from a thread other than the one running the
saver's event loop. It passes the whole ``langgraph-checkpoint-conformance`` suite, optional capabilities
included (``tests/integration/test_checkpointer_conformance.py``).

Each call is one SurrealQL round trip (``alist``: one per 100 checkpoints; ``aprune``, ``acopy_thread``: two),
and writes read nothing back. A checkpoint is stored whole, as one serialized blob, like the SQLite saver does:
the SDK encodes statements in pure Python, so one bytes field is far cheaper to send than per-channel rows.
Record ids are arrays (``[thread, ns, checkpoint]``; writes add ``task, idx``), so a checkpoint and its writes
are key and key-range reads and writing the same thing twice keeps one row. "Latest" and history walk the
(thread, ns, checkpoint id) index backwards: a key-range scan in this SurrealDB reads its whole range before
LIMIT applies, the index does not.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from surrealdb import RecordID

from db.connection import Database, connect
from db.stores._codec import plain, unnull

T = TypeVar("T")

CHECKPOINTS = "lg_checkpoint"
WRITES = "lg_write"
# alist reads this many checkpoints per round trip, so a long history is never held in memory at once.
_PAGE = 100

# The pending writes of the checkpoint in the current row: a key-range read on the writes' array ids.
_WRITES_OF_ROW = (
    "(SELECT task_id, task_path, idx, channel, type, value FROM lg_write:"
    "[$parent.thread_id, $parent.checkpoint_ns, $parent.checkpoint_id, NONE].."
    "[$parent.thread_id, $parent.checkpoint_ns, $parent.checkpoint_id, {}]) AS writes"
)
_FIELDS = f"thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, {_WRITES_OF_ROW}"

# Deletes whole threads ($threads), or the checkpoints listed in $doomed (which {find} may set) with their writes.
_DELETE_THREADS = (
    "BEGIN TRANSACTION; FOR $t IN $threads { DELETE lg_checkpoint:[$t, NONE]..[$t, {}] RETURN NONE; "
    "DELETE lg_write:[$t, NONE]..[$t, {}] RETURN NONE; }; COMMIT TRANSACTION;"
)
_DELETE_EACH = (
    "BEGIN TRANSACTION; {find}FOR $c IN $doomed {{ "
    "DELETE type::record('lg_checkpoint', [$c.thread_id, $c.checkpoint_ns, $c.checkpoint_id]) RETURN NONE; "
    "DELETE lg_write:[$c.thread_id, $c.checkpoint_ns, $c.checkpoint_id, NONE]"
    "..[$c.thread_id, $c.checkpoint_ns, $c.checkpoint_id, {{}}] RETURN NONE; }}; COMMIT TRANSACTION;"
)

_SYNC_FROM_LOOP = (
    "Synchronous calls to SurrealSaver are only allowed from a thread other than the one running its event loop "
    "(they would block that loop). From async code use the async interface: `await checkpointer.{method}(...)`, "
    "`await graph.ainvoke(...)` or `graph.astream(...)`."
)


class SurrealSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpoints and pending writes in SurrealDB (tables ``lg_checkpoint`` and ``lg_write``).

    Create it inside the event loop that owns ``db`` (an open, migrated ``Database`` from ``connect()``); it
    does not close ``db``. A thread's history, newest first: ``saver.alist({"configurable": {"thread_id": t}})``
    or ``graph.aget_state_history(config)``.

    Args:
        db: The database to keep checkpoints in.
        serde: Serializer for checkpoints and writes; langgraph's ``JsonPlusSerializer`` by default.
    """

    def __init__(self, db: Database, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.db = db
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise RuntimeError(
                "create SurrealSaver inside the event loop that owns the database (in async code)"
            ) from exc

    @classmethod
    @asynccontextmanager
    async def from_conn_string(cls, url: str) -> AsyncIterator[SurrealSaver]:
        """Open (and migrate) the database at ``url``, yield a saver over it, close the database on exit."""
        async with connect(url) as db:
            yield cls(db)

    # -- async interface -------------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest in its namespace; None if there is none."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        if checkpoint_id := get_checkpoint_id(config):
            row = await self.db.query_one(
                f"SELECT {_FIELDS} FROM ONLY $id", {"id": RecordID(CHECKPOINTS, [thread_id, ns, checkpoint_id])}
            )
            return None if row is None else self._tuple(row, config)
        rows = await self.db.query_one(
            f"SELECT {_FIELDS} FROM lg_checkpoint WHERE thread_id = $thread AND checkpoint_ns = $ns "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            {"thread": thread_id, "ns": ns},
        )
        return self._tuple(rows[0]) if rows else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints matching ``config`` (thread, namespace, id), ``filter`` (metadata key = value) and
        ``before`` (checkpoint ids below its id), newest first, at most ``limit``."""
        where: list[str] = []
        params: dict[str, Any] = {}
        # One thread and namespace: the index walks checkpoint ids backwards and pages on the id alone. Otherwise
        # ids may repeat across threads and namespaces, so pages are cut on (id, thread, namespace).
        order, after_key = (
            "checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC",
            "[checkpoint_id, thread_id, checkpoint_ns]",
        )
        if config is not None:
            conf = config["configurable"]
            where.append("thread_id = $thread")
            params["thread"] = str(conf["thread_id"])
            if (ns := conf.get("checkpoint_ns")) is not None:
                where.append("checkpoint_ns = $ns")
                params["ns"] = ns
                order, after_key = "checkpoint_id DESC", "checkpoint_id"
            if checkpoint_id := get_checkpoint_id(config):
                where.append("checkpoint_id = $checkpoint_id")
                params["checkpoint_id"] = checkpoint_id
        for n, (key, value) in enumerate((filter or {}).items()):
            params[f"k{n}"], params[f"v{n}"] = key, plain(value)
            # A missing key and a stored None both match None, as in langgraph's InMemorySaver.
            where.append(
                f"(metadata[$k{n}] = NONE OR metadata[$k{n}] = NULL)" if value is None else f"metadata[$k{n}] = $v{n}"
            )
        if before is not None and (before_id := get_checkpoint_id(before)):
            where.append("checkpoint_id < $before")
            params["before"] = before_id
        remaining = limit
        after: Any = None
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            conditions = [*where, f"{after_key} < $after"] if after is not None else where
            rows = await self.db.query_one(
                f"SELECT {_FIELDS} FROM lg_checkpoint {'WHERE ' + ' AND '.join(conditions) if conditions else ''} "
                f"ORDER BY {order} LIMIT $page",
                {**params, "page": page, "after": after},
            )
            for row in rows or []:
                yield self._tuple(row)
            if not rows or len(rows) < page:
                return
            last = rows[-1]
            after = (
                last["checkpoint_id"]
                if "ns" in params
                else [last[k] for k in ("checkpoint_id", "thread_id", "checkpoint_ns")]
            )
            if remaining is not None:
                remaining -= len(rows)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` as a child of the checkpoint ``config`` names; returns the config naming it.

        The whole checkpoint is serialized (channel values included), so ``new_versions`` needs no rows of its
        own: every checkpoint reads back complete from its one row.
        """
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        type_, blob = self.serde.dumps_typed(checkpoint)
        row = {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": conf.get("checkpoint_id"),
            "type": type_,
            "checkpoint": blob,
            "metadata": plain(get_checkpoint_metadata(config, metadata)),
        }
        await self.db.query(
            "UPSERT $id CONTENT $row RETURN NONE",
            {"id": RecordID(CHECKPOINTS, [thread_id, ns, checkpoint["id"]]), "row": row},
        )
        return _config(conf["thread_id"], ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against the checkpoint ``config`` names.

        Idempotent: a regular write already stored under (task, index) is kept; the special channels (error,
        interrupt, ...) have fixed negative indices and overwrite, as in langgraph's own savers.
        """
        conf = config["configurable"]
        thread_id, ns, checkpoint_id = str(conf["thread_id"]), conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        same = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id, "task_id": task_id}
        keep: list[dict[str, Any]] = []
        overwrite: list[dict[str, Any]] = []
        for position, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, position)
            type_, blob = self.serde.dumps_typed(value)
            key = RecordID(WRITES, [thread_id, ns, checkpoint_id, task_id, idx])
            row = {"id": key, **same, "task_path": task_path, "idx": idx, "channel": channel}
            (overwrite if idx < 0 else keep).append({**row, "type": type_, "value": blob})
        statements = ["INSERT IGNORE INTO lg_write $keep RETURN NONE;"] if keep else []
        if overwrite:
            statements.append("FOR $row IN $overwrite { UPSERT $row.id CONTENT $row RETURN NONE; };")
        if len(statements) > 1:  # one statement is atomic already, and skipping BEGIN/COMMIT saves two parses
            statements = ["BEGIN TRANSACTION;", *statements, "COMMIT TRANSACTION;"]
        if statements:
            await self.db.query("\n".join(statements), {"keep": keep, "overwrite": overwrite})

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread, in all namespaces."""
        await self.db.query(_DELETE_THREADS, {"threads": [str(thread_id)]})

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of ``run_ids``, and their writes.

        Scans ``lg_checkpoint`` (no index on run ids): meant for rare clean-ups, not a hot path.
        """
        if run_ids:
            find = "LET $doomed = SELECT thread_id, checkpoint_ns, checkpoint_id FROM lg_checkpoint "
            find += "WHERE metadata.run_id IN $runs; "  # LET: a FOR over a subquery fails in this SurrealDB
            await self.db.query(_DELETE_EACH.format(find=find), {"runs": [str(run_id) for run_id in run_ids]})

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another (whole parent chains, all namespaces)."""
        source, target = str(source_thread_id), str(target_thread_id)
        checkpoints, writes = await self.db.query(
            "SELECT * FROM lg_checkpoint:[$thread, NONE]..[$thread, {}];"
            "SELECT * FROM lg_write:[$thread, NONE]..[$thread, {}];",
            {"thread": source},
        )
        copies = [_retarget(row, target) for row in [*(checkpoints or []), *(writes or [])]]
        if copies:
            await self.db.query("FOR $row IN $rows { UPSERT $row.id CONTENT $row RETURN NONE; };", {"rows": copies})

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps each namespace's latest checkpoint, ``"delete"`` removes all.

        ``keep_latest`` is ``DeltaChannel``-safe: it also keeps the latest checkpoint's ancestors back to the
        nearest one where every delta channel was snapshotted (metadata without
        ``counters_since_delta_snapshot``), with their writes, since delta channels are rebuilt from those.
        """
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
        threads = [str(thread_id) for thread_id in thread_ids]
        if not threads:
            return
        if strategy == "delete":
            await self.db.query(_DELETE_THREADS, {"threads": threads})
            return
        found = await self.db.query(
            "".join(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata.counters_since_delta_"
                f"snapshot != NONE AS delta FROM lg_checkpoint:[$t{n}, NONE]..[$t{n}, {{}}];"
                for n in range(len(threads))
            ),
            {f"t{n}": thread for n, thread in enumerate(threads)},
        )
        if doomed := _prunable([row for rows in found for row in rows or []]):
            await self.db.query(_DELETE_EACH.format(find=""), {"doomed": doomed})

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version: a zero-padded counter plus a random fraction, as langgraph's savers use."""
        current_v = 0 if current is None else current if isinstance(current, int) else int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- sync interface: only from another thread ------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking("aget_tuple", lambda: self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        self._check_not_on_loop("alist")
        pages = cast(
            AsyncGenerator[CheckpointTuple, None], self.alist(config, filter=filter, before=before, limit=limit)
        )
        try:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(_next(pages), self.loop).result()
                except StopAsyncIteration:
                    return
        finally:
            asyncio.run_coroutine_threadsafe(pages.aclose(), self.loop).result()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking("aput", lambda: self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking("aput_writes", lambda: self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking("adelete_thread", lambda: self.adelete_thread(thread_id))

    # -- helpers ---------------------------------------------------------------------------------------------

    def _check_not_on_loop(self, method: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.loop:
            raise asyncio.InvalidStateError(_SYNC_FROM_LOOP.format(method=method))

    def _blocking(self, method: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine on the saver's loop from another thread and wait for it."""
        self._check_not_on_loop(method)
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def _tuple(self, row: dict[str, Any], config: RunnableConfig | None = None) -> CheckpointTuple:
        thread_id, ns, parent_id = row["thread_id"], row["checkpoint_ns"], row.get("parent_checkpoint_id")
        writes = sorted(row.get("writes") or [], key=lambda w: writes_sort_key(w["task_path"], w["task_id"], w["idx"]))
        pending: list[PendingWrite] = [
            (w["task_id"], w["channel"], self.serde.loads_typed((w["type"], w["value"]))) for w in writes
        ]
        return CheckpointTuple(
            config=config or _config(thread_id, ns, row["checkpoint_id"]),
            checkpoint=self.serde.loads_typed((row["type"], row["checkpoint"])),
            metadata=cast(CheckpointMetadata, unnull(row.get("metadata") or {})),
            parent_config=_config(thread_id, ns, parent_id) if parent_id else None,
            pending_writes=pending,
        )


def _config(thread_id: Any, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def _retarget(row: dict[str, Any], thread_id: str) -> dict[str, Any]:
    """A copy of a checkpoint or write row moved to another thread (its array id's first element)."""
    key = list(row["id"].id)
    key[0] = thread_id
    return {**row, "id": RecordID(row["id"].table_name, key), "thread_id": thread_id}


def _prunable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checkpoints ``keep_latest`` removes: all but each namespace's latest and its delta chain."""
    by_ns: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_ns.setdefault((row["thread_id"], row["checkpoint_ns"]), {})[row["checkpoint_id"]] = row
    doomed: list[dict[str, Any]] = []
    for checkpoints in by_ns.values():
        keep: set[str] = set()
        current: dict[str, Any] | None = checkpoints[max(checkpoints)]
        while current is not None and current["checkpoint_id"] not in keep:
            keep.add(current["checkpoint_id"])
            parent = current.get("parent_checkpoint_id")
            current = checkpoints.get(parent) if current.get("delta") and parent else None
        doomed.extend(row for checkpoint_id, row in checkpoints.items() if checkpoint_id not in keep)
    return doomed


async def _next(pages: AsyncIterator[T]) -> T:
    return await pages.__anext__()
