"""Group commit over SurrealDB: one transaction (one statement batch, one round trip) for everything the engine
changed in one tick — task and workflow fields, new checkpoints, new events.

Writes are idempotent, so a batch whose answer was lost (a dropped server connection) can be sent again: field
updates set the same values, and rows with ids already stored are skipped (``INSERT IGNORE``; every event and
checkpoint id is unique).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from db.connection import Database
from db.models import Event, Task, Workflow, task_record_key
from db.stores._codec import plain, rid, to_row
from db.stores.interfaces import StateBatch, StateBatchStore


def event_row(event: Event) -> dict[str, Any]:
    """An event as an ``INSERT`` row, built directly (the hottest row: ``model_dump`` costs more than it)."""
    row: dict[str, Any] = {
        "id": rid("event", event.id),
        "ts": event.ts,
        "seq": event.seq,
        "type": event.type,
        "workflow": event.workflow,
        "data": plain(event.data),
    }
    if event.task is not None:
        row["task"] = event.task
    if event.agent is not None:
        row["agent"] = event.agent
    return row


def _field_groups(changes: Iterable[tuple[Any, dict[str, Any]]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Updates grouped by the set of fields they change, so each group is one ``FOR … UPDATE SET`` statement."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record, fields in changes:
        names = tuple(sorted(fields))
        # ``None`` travels as NONE inside the object, which removes the key: ``$u.f.error`` then reads NONE and
        # the SET clears the field, as a top-level ``None`` does in ``set_clause``.
        patch = {name: (None if value is None else plain(value)) for name, value in fields.items()}
        groups.setdefault(names, []).append({"id": record, "f": patch})
    return groups


def _check_fields(model: type[Task] | type[Workflow], fields: Iterable[str]) -> None:
    unknown = set(fields) - set(model.model_fields)
    if unknown or "id" in set(fields):
        raise ValueError(f"cannot update {model.__name__} fields {sorted(unknown | ({'id'} & set(fields)))}")


class SurrealStateBatchStore(StateBatchStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    def statement(self, batch: StateBatch) -> tuple[str, dict[str, Any]]:
        """The SurrealQL transaction and its parameters for ``batch`` (exposed for tests and benchmarks)."""
        lines = ["BEGIN TRANSACTION;"]
        params: dict[str, Any] = {}
        task_changes = []
        for (workflow, key), fields in batch.tasks.items():
            _check_fields(Task, fields)
            task_changes.append((rid("task", task_record_key(workflow, key)), fields))
        workflow_changes = []
        for workflow, fields in batch.workflows.items():
            _check_fields(Workflow, fields)
            workflow_changes.append((rid("workflow", workflow), fields))
        for table, changes in (("t", task_changes), ("w", workflow_changes)):
            for index, (names, rows) in enumerate(_field_groups(changes).items()):
                name = f"{table}{index}"
                params[name] = rows
                assignments = ", ".join(f"{field} = $u.f.{field}" for field in names)
                lines.append(f"FOR $u IN ${name} {{ UPDATE $u.id SET {assignments} RETURN NONE }};")
        if batch.checkpoints:
            params["checkpoints"] = [to_row(c, "checkpoint", c.id) for c in batch.checkpoints]
            lines.append("INSERT IGNORE INTO checkpoint $checkpoints RETURN NONE;")
        if batch.events:
            params["events"] = [event_row(e) for e in batch.events]
            lines.append("INSERT IGNORE INTO event $events RETURN NONE;")
        lines.append("COMMIT TRANSACTION;")
        return "\n".join(lines), params

    async def apply(self, batch: StateBatch) -> None:
        if batch.empty:
            return
        sql, params = self.statement(batch)
        await self._db.query(sql, params)
