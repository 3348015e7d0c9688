"""The LangGraph checkpointer's stored rows (``db.checkpointer``, tables ``lg_checkpoint`` and ``lg_write``) as plain
dicts, read by thread prefix and written back as they were: what a flight recording (``engine.recorder``) carries
of a workflow's graph tasks.

A row is ``{"table": "lg_checkpoint" | "lg_write", ...its fields}``, blobs as ``bytes``, without its record id
(an array made of its fields: ``[thread, ns, checkpoint]``, writes add ``task_id, idx``) or ``written_at`` (the
database sets it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from surrealdb import RecordID

from db.checkpointer import CHECKPOINTS, WRITES
from db.connection import Database
from db.stores._codec import unnull

__all__ = ["read_thread_rows", "write_thread_rows"]

_WRITE_CHUNK = 200


async def read_thread_rows(db: Database, prefix: str) -> list[dict[str, Any]]:
    """Every checkpoint and write of the threads whose id starts with ``prefix`` (checkpoints first, in id order).

    ``prefix`` must end with a character below U+FFFF other than the last one: the read is a key range from
    ``[prefix, NONE]`` to ``[prefix with its last character + 1, NONE]`` (array ids sort by their first element).
    """
    if not prefix:
        raise ValueError("a thread prefix must not be empty")
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    checkpoints, writes = await db.query(
        f"SELECT * FROM {CHECKPOINTS}:[$lo, NONE]..[$hi, NONE] ORDER BY thread_id, checkpoint_ns, checkpoint_id;"
        f"SELECT * FROM {WRITES}:[$lo, NONE]..[$hi, NONE] ORDER BY thread_id, checkpoint_ns, checkpoint_id, "
        "task_id, idx;",
        {"lo": prefix, "hi": upper},
    )
    rows: list[dict[str, Any]] = []
    for table, found in ((CHECKPOINTS, checkpoints), (WRITES, writes)):
        for stored in found or []:
            row = unnull(dict(stored))
            row.pop("id", None)
            row.pop("written_at", None)
            if str(row.get("thread_id", "")).startswith(prefix):
                rows.append({"table": table, **row})
    return rows


def _record_id(row: dict[str, Any]) -> RecordID:
    table = row.get("table")
    key = [row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]]
    if table == WRITES:
        key += [row["task_id"], row["idx"]]
    elif table != CHECKPOINTS:
        raise ValueError(f"a LangGraph row must be of table {CHECKPOINTS} or {WRITES}, not {table!r}")
    return RecordID(table, key)


async def write_thread_rows(db: Database, rows: Sequence[dict[str, Any]]) -> None:
    """Store rows read by ``read_thread_rows`` (in this or another database) under their ids; storing the same row
    again keeps one. Raises ``ValueError`` for a row of another table or without its key fields."""
    prepared = []
    for row in rows:
        try:
            record = _record_id(row)
        except KeyError as exc:
            raise ValueError(f"a LangGraph row lacks its key field {exc.args[0]!r}") from None
        prepared.append({**{k: v for k, v in row.items() if k != "table"}, "id": record})
    for start in range(0, len(prepared), _WRITE_CHUNK):
        await db.query(
            "FOR $row IN $rows { UPSERT $row.id CONTENT $row RETURN NONE; };",
            {"rows": prepared[start : start + _WRITE_CHUNK]},
        )
