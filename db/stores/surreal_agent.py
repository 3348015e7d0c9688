"""SurrealDB implementation of the agent-side metric store (memories: ``surreal_memory``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from db.connection import Database
from db.models import Metric, new_id
from db.stores._codec import from_rows, to_row
from db.stores.interfaces import MetricStore


class SurrealMetricStore(MetricStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_many(self, metrics: Sequence[Metric]) -> None:
        if not metrics:
            return
        rows = [to_row(metric, "agent_metric", new_id()) for metric in metrics]
        await self._db.query("INSERT INTO agent_metric $rows RETURN NONE", {"rows": rows})

    async def query(
        self,
        name: str,
        since: datetime | None = None,
        agent: str | None = None,
        workflow: str | None = None,
        limit: int = 1000,
    ) -> list[Metric]:
        clauses = ["name = $name"]
        params: dict[str, Any] = {"name": name, "limit": limit}
        for field, value in (("ts", since), ("agent", agent), ("workflow", workflow)):
            if value is not None:
                clauses.append(f"{field} {'>=' if field == 'ts' else '='} ${field}")
                params[field] = value
        rows = await self._db.query_one(
            f"SELECT * FROM agent_metric WHERE {' AND '.join(clauses)} ORDER BY ts LIMIT $limit", params
        )
        return from_rows(Metric, rows, keep_id=False)
