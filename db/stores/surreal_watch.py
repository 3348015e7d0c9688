"""SurrealDB implementation of the watchpoint store."""

from __future__ import annotations

from datetime import datetime

from db.connection import Database
from db.models import Watchpoint
from db.stores._codec import from_row, from_rows, rid, to_row
from db.stores.interfaces import WatchpointStore


class SurrealWatchpointStore(WatchpointStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, watchpoint: Watchpoint) -> None:
        row = to_row(watchpoint, "watchpoint", watchpoint.id)
        await self._db.write_one("UPSERT $row.id CONTENT $row RETURN NONE", {"row": row})

    async def list(self, workflow_id: str) -> list[Watchpoint]:
        rows = await self._db.query_one(
            "SELECT * FROM watchpoint WHERE workflow = $workflow ORDER BY created_at", {"workflow": workflow_id}
        )
        return from_rows(Watchpoint, rows)

    async def get(self, watchpoint_id: str) -> Watchpoint | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("watchpoint", watchpoint_id)})
        return from_row(Watchpoint, row) if row else None

    async def delete(self, watchpoint_id: str) -> bool:
        rows = await self._db.write_one("DELETE $id RETURN BEFORE", {"id": rid("watchpoint", watchpoint_id)})
        return bool(rows)

    async def count_trigger(self, watchpoint_id: str, at: datetime) -> None:
        await self._db.write_one(
            "UPDATE $id SET triggered += 1, last_triggered_at = $at WHERE id != NONE RETURN NONE",
            {"id": rid("watchpoint", watchpoint_id), "at": at},
        )
