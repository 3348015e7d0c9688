"""SurrealDB implementations of the stores LangGraph agents add: node executions and approvals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from db.connection import Database
from db.errors import QueryFailed
from db.models import Approval, ApprovalStatus, GraphNode
from db.stores._codec import from_row, from_rows, plain, rid, to_row
from db.stores.interfaces import ApprovalStore, GraphNodeStore


class SurrealGraphNodeStore(GraphNodeStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, node: GraphNode) -> None:
        row = to_row(node, "graph_node", node.id)
        await self._db.query_one("UPSERT $row.id CONTENT $row RETURN NONE", {"row": row})

    async def list(self, workflow_id: str, task: str | None = None) -> list[GraphNode]:
        where = "workflow = $workflow" + (" AND task = $task" if task is not None else "")
        rows = await self._db.query_one(
            f"SELECT * FROM graph_node WHERE {where} ORDER BY started_at, step", {"workflow": workflow_id, "task": task}
        )
        return from_rows(GraphNode, rows)


class SurrealApprovalStore(ApprovalStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self, approval: Approval) -> tuple[Approval, bool]:
        row = to_row(approval, "approval", approval.id)
        # Whoever asks twice (a resumed run re-asking the same interrupt) gets the first row back.
        try:
            stored = await self._db.query_one("CREATE ONLY $row.id CONTENT $row RETURN AFTER", {"row": row})
            return from_row(Approval, stored, keep_id=False), True
        except QueryFailed as exc:
            if "already exists" not in str(exc).lower():
                raise
        existing = await self.get(approval.id)
        if existing is None:  # pragma: no cover - created and deleted in between; nothing deletes approvals
            raise LookupError(f"approval {approval.id} vanished")
        return existing, False

    async def get(self, approval_id: str) -> Approval | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("approval", approval_id)})
        return from_row(Approval, row, keep_id=False) if row else None

    async def list(self, workflow_id: str, *, pending_only: bool = False) -> list[Approval]:
        where = "workflow = $workflow" + (" AND status = 'pending'" if pending_only else "")
        rows = await self._db.query_one(
            f"SELECT * FROM approval WHERE {where} ORDER BY created_at", {"workflow": workflow_id}
        )
        return from_rows(Approval, rows, keep_id=False)

    async def answer(
        self, approval_id: str, *, status: ApprovalStatus, value: Any, by: str, announced: bool = True
    ) -> Approval | None:
        rows = await self._db.query_one(
            "UPDATE $id SET status = $status, value = $value, answered_by = $by, answered_at = $at, "
            "announced = $announced WHERE status = 'pending' RETURN AFTER",
            {
                "id": rid("approval", approval_id),
                "status": status.value,
                "value": plain(value),
                "by": by,
                "at": datetime.now(UTC),
                "announced": announced,
            },
        )
        return from_row(Approval, rows[0], keep_id=False) if rows else None
