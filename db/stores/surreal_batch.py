"""Group commit over SurrealDB: one transaction (one statement batch, one round trip) for everything the engine
changed in one tick — task and workflow fields, new checkpoints, new events (one ``event_page`` per workflow).

Writes are idempotent, so a batch whose answer was lost (a dropped server connection) can be sent again: field
updates set the same values, and rows with ids already stored are skipped (``INSERT IGNORE``; every event and
checkpoint id is unique).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from surrealdb import RecordID

from db.connection import Database, Prepared
from db.models import Event, EventType, Task, Workflow, task_record_key
from db.stores._codec import plain, rid, to_row, unnull
from db.stores.interfaces import StateBatch, StateBatchStore


def _stored_data(event: Event) -> dict[str, Any]:
    """An event's ``data`` as stored. Output lines are stored joined by newlines (``text``): SurrealDB's cost is
    per value, and one string costs a fifth of a thousand (lines never hold a newline, so splitting restores
    them exactly)."""
    data = event.data
    lines = data.get("lines") if event.type == EventType.TASK_OUTPUT else None
    if isinstance(lines, list) and lines:
        with contextlib.suppress(TypeError):  # not all strings: stored as they are
            return {"stream": event.stream, "text": "\n".join(lines)}
    return plain(data)  # type: ignore[no-any-return]


def _loaded_data(type: str, data: dict[str, Any]) -> dict[str, Any]:
    if type == EventType.TASK_OUTPUT and "text" in data and "lines" not in data:
        return {"stream": data.get("stream", "stdout"), "lines": str(data["text"]).split("\n")}
    return data


def _event_entry(event: Event) -> dict[str, Any]:
    """One event inside a page, built directly (the hottest value we store: ``model_dump`` costs more)."""
    entry: dict[str, Any] = {
        "id": event.id,
        "ts": event.ts,
        "seq": event.seq,
        "type": event.type,
        "data": _stored_data(event),
    }
    if event.task is not None:
        entry["task"] = event.task
    if event.agent is not None:
        entry["agent"] = event.agent
    return entry


def page_rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """``event_page`` rows for ``events``: one per workflow, its events in seq order.

    A page's id is ``[workflow, first seq]``: storing the same page again is recognised (``INSERT IGNORE``)."""
    by_workflow: dict[str, list[Event]] = {}
    for event in events:
        by_workflow.setdefault(event.workflow, []).append(event)
    rows = []
    for workflow, page in by_workflow.items():
        page.sort(key=lambda event: event.seq)
        first, last = page[0].seq, page[-1].seq
        rows.append(
            {
                "id": RecordID("event_page", [workflow, first]),
                "workflow": workflow,
                "first_seq": first,
                "last_seq": last,
                "events": [_event_entry(event) for event in page],
            }
        )
    return rows


def events_of_page(row: dict[str, Any]) -> list[Event]:
    """The events stored in one ``event_page`` row."""
    workflow = row["workflow"]
    out = []
    for entry in row.get("events") or []:
        entry = unnull(entry)
        out.append(
            Event(
                id=str(entry["id"]),
                ts=entry["ts"],
                seq=entry["seq"],
                type=entry["type"],
                workflow=workflow,
                task=entry.get("task"),
                agent=entry.get("agent"),
                data=_loaded_data(entry["type"], entry.get("data") or {}),
            )
        )
    return out


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
        # Tasks before their workflow: in the log a workflow's row follows all of its tasks' rows.
        created = [(rid("task", task_record_key(*key)), fields) for key, fields in batch.new_tasks.items()]
        created_workflows = [(rid("workflow", key), fields) for key, fields in batch.new_workflows.items()]
        for table, model, new in (("task", Task, created), ("workflow", Workflow, created_workflows)):
            if new:
                for _, fields in new:
                    _check_fields(model, fields)
                params[f"new_{table}"] = [
                    {"id": record, **{k: plain(v) for k, v in fields.items() if v is not None}}
                    for record, fields in new
                ]
                lines.append(f"INSERT IGNORE INTO {table} $new_{table} RETURN NONE;")
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
            params["pages"] = page_rows(batch.events)
            lines.append("INSERT IGNORE INTO event_page $pages RETURN NONE;")
        lines.append("COMMIT TRANSACTION;")
        return "\n".join(lines), params

    def prepare(self, batch: StateBatch) -> Prepared | None:
        if batch.empty:
            return None
        sql, params = self.statement(batch)
        return self._db.prepare(sql, params)

    async def apply_prepared(self, prepared: Any) -> None:
        if prepared is not None:
            await self._db.run(prepared)

    async def apply(self, batch: StateBatch) -> None:
        await self.apply_prepared(self.prepare(batch))
