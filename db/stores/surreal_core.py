"""SurrealDB implementations of the workflow, task, checkpoint and event stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from db.connection import Database
from db.errors import QueryFailed
from db.models import Checkpoint, ControlRequest, Event, Task, Workflow, WorkflowStatus, task_record_key
from db.stores._codec import from_row, from_rows, rid, set_clause, to_row
from db.stores.interfaces import (
    CheckpointStore,
    ControlRequestStore,
    EventStore,
    RecordNotFound,
    TaskStore,
    WorkflowStore,
)
from db.stores.surreal_batch import events_of_page, page_rows


def _is_duplicate(exc: QueryFailed) -> bool:
    text = str(exc).lower()
    return "already exists" in text or "already contains" in text


class SurrealWorkflowStore(WorkflowStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, workflow: Workflow, *, as_recorded: bool = False) -> Workflow:
        try:
            rows = await self._db.query_one(
                "CREATE $id CONTENT $row RETURN AFTER",
                {"id": rid("workflow", workflow.id), "row": _body(workflow), "keep_updated_at": as_recorded},
            )
        except QueryFailed as exc:
            if _is_duplicate(exc):
                raise ValueError(f"workflow {workflow.id} already exists") from exc
            raise
        return from_row(Workflow, rows[0])

    async def get(self, workflow_id: str) -> Workflow | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("workflow", workflow_id)})
        return from_row(Workflow, row) if row else None

    async def list(self, status: WorkflowStatus | None = None, limit: int = 100) -> list[Workflow]:
        where = "WHERE status = $status" if status is not None else ""
        rows = await self._db.query_one(
            f"SELECT * FROM workflow {where} ORDER BY created_at DESC LIMIT $limit",
            {"status": status.value if status else None, "limit": limit},
        )
        return from_rows(Workflow, rows)

    async def update(self, workflow_id: str, **changes: Any) -> Workflow:
        assignments, params = set_clause(Workflow, changes)
        if not assignments:
            found = await self.get(workflow_id)
            if found is None:
                raise RecordNotFound(f"no workflow {workflow_id}")
            return found
        rows = await self._db.query_one(
            f"UPDATE $id SET {assignments} RETURN AFTER", {"id": rid("workflow", workflow_id), **params}
        )
        if not rows:
            raise RecordNotFound(f"no workflow {workflow_id}")
        return from_row(Workflow, rows[0])


class SurrealTaskStore(TaskStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put_many(self, tasks: Sequence[Task], *, as_recorded: bool = False) -> None:
        if not tasks:
            return
        rows = [to_row(task, "task", task.id) for task in tasks]
        # One statement, one round trip: a workflow's tasks are written together when it is created.
        await self._db.query(
            "FOR $row IN $rows { UPSERT $row.id CONTENT $row }", {"rows": rows, "keep_updated_at": as_recorded}
        )

    async def get(self, workflow_id: str, key: str) -> Task | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("task", task_record_key(workflow_id, key))})
        return from_row(Task, row, keep_id=False) if row else None

    async def list(self, workflow_id: str) -> list[Task]:
        rows = await self._db.query_one(
            "SELECT * FROM task WHERE workflow = $workflow ORDER BY created_at, key",
            {"workflow": workflow_id},
        )
        return from_rows(Task, rows, keep_id=False)

    async def update(self, workflow_id: str, key: str, **changes: Any) -> Task:
        assignments, params = set_clause(Task, changes)
        if not assignments:
            found = await self.get(workflow_id, key)
            if found is None:
                raise RecordNotFound(f"no task {key} in workflow {workflow_id}")
            return found
        rows = await self._db.query_one(
            f"UPDATE $id SET {assignments} RETURN AFTER",
            {"id": rid("task", task_record_key(workflow_id, key)), **params},
        )
        if not rows:
            raise RecordNotFound(f"no task {key} in workflow {workflow_id}")
        return from_row(Task, rows[0], keep_id=False)

    async def set(self, workflow_id: str, key: str, **changes: Any) -> None:
        assignments, params = set_clause(Task, changes)
        record = rid("task", task_record_key(workflow_id, key))
        if not assignments:
            assignments = "updated_at = time::now()"
        ids = await self._db.query_one(f"UPDATE $id SET {assignments} RETURN VALUE id", {"id": record, **params})
        if not ids:
            raise RecordNotFound(f"no task {key} in workflow {workflow_id}")


class SurrealCheckpointStore(CheckpointStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, checkpoint: Checkpoint) -> Checkpoint:
        try:
            # RETURN NONE: reading a large snapshot back would double the cost of taking it.
            await self._db.query_one(
                "CREATE $id CONTENT $row RETURN NONE",
                {"id": rid("checkpoint", checkpoint.id), "row": _body(checkpoint)},
            )
        except QueryFailed as exc:
            if _is_duplicate(exc):
                raise ValueError(
                    f"checkpoint {checkpoint.number} of workflow {checkpoint.workflow} already exists"
                ) from exc
            raise
        return checkpoint

    async def get(self, checkpoint_id: str) -> Checkpoint | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("checkpoint", checkpoint_id)})
        return from_row(Checkpoint, row) if row else None

    async def list(self, workflow_id: str) -> list[Checkpoint]:
        rows = await self._db.query_one(
            "SELECT * FROM checkpoint WHERE workflow = $workflow ORDER BY number", {"workflow": workflow_id}
        )
        return from_rows(Checkpoint, rows)

    async def latest(self, workflow_id: str) -> Checkpoint | None:
        rows = await self._db.query_one(
            "SELECT * FROM checkpoint WHERE workflow = $workflow ORDER BY number DESC LIMIT 1",
            {"workflow": workflow_id},
        )
        return from_row(Checkpoint, rows[0]) if rows else None


class SurrealEventStore(EventStore):
    """Events in ``event_page`` rows (one per workflow per write), and in ``event`` rows for databases written
    before pages; reads merge both."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        pages = page_rows(events)
        for page in pages:
            seqs = [entry["seq"] for entry in page["events"]]
            if len(set(seqs)) != len(seqs):
                raise ValueError(f"an event of workflow {page['workflow']} appears twice in this batch")
        # A seq names one event forever: refuse one already stored (pages overlapping the new ones, by index).
        params: dict[str, Any] = {}
        for i, page in enumerate(pages):
            params.update({f"w{i}": page["workflow"], f"f{i}": page["first_seq"], f"l{i}": page["last_seq"]})
        clashes = await self._db.query(
            ";".join(
                f"SELECT VALUE events.seq FROM event_page WHERE workflow = $w{i} AND last_seq >= $f{i} "
                f"AND first_seq <= $l{i}; SELECT VALUE seq FROM event WHERE workflow = $w{i} "
                f"AND seq >= $f{i} AND seq <= $l{i}"
                for i in range(len(pages))
            ),
            params,
        )
        for i, page in enumerate(pages):
            stored = {seq for seqs in clashes[2 * i] or [] for seq in seqs} | set(clashes[2 * i + 1] or [])
            taken = stored & {entry["seq"] for entry in page["events"]}
            if taken:
                raise ValueError(f"events {sorted(taken)[:5]} of workflow {page['workflow']} are already stored")
        try:
            await self._db.query("INSERT INTO event_page $pages RETURN NONE", {"pages": pages})
        except QueryFailed as exc:
            if _is_duplicate(exc):
                raise ValueError(f"an event in this batch is already stored: {exc}") from exc
            raise

    async def list(self, workflow_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        # Pages holding seqs after ``after_seq``, by the (workflow, last_seq) index — ordered by it too (pages do not
        # overlap, so that is seq order), or the planner scans every page of the workflow to sort them (74 s for
        # the tail of 2.5M events); a limit of events needs at most that many pages, so the query is bounded too.
        page_limit = "LIMIT $limit" if limit is not None else ""
        pages, legacy = await self._db.query(
            f"SELECT * FROM event_page WHERE workflow = $workflow AND last_seq > $after ORDER BY last_seq "
            f"{page_limit}; SELECT * FROM event WHERE workflow = $workflow AND seq > $after ORDER BY seq {page_limit}",
            {"workflow": workflow_id, "after": after_seq, "limit": limit},
        )
        found = [event for row in pages or [] for event in events_of_page(row) if event.seq > after_seq]
        if legacy:
            found = sorted([*found, *from_rows(Event, legacy)], key=lambda event: event.seq)
        return found[:limit] if limit is not None else found

    async def last_seq(self, workflow_id: str) -> int:
        # math::max of an empty array is -inf on this core, so take the top of each index instead.
        value = await self._db.query_one(
            "RETURN math::max([(SELECT VALUE last_seq FROM event_page WHERE workflow = $workflow "
            "ORDER BY last_seq DESC LIMIT 1)[0] ?? 0, (SELECT VALUE seq FROM event WHERE workflow = $workflow "
            "ORDER BY seq DESC LIMIT 1)[0] ?? 0])",
            {"workflow": workflow_id},
        )
        return int(value or 0)


class SurrealControlRequestStore(ControlRequestStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, request: ControlRequest) -> ControlRequest:
        await self._db.query_one(
            "CREATE $id CONTENT $row RETURN NONE", {"id": rid("control_request", request.id), "row": _body(request)}
        )
        return request

    async def get(self, request_id: str) -> ControlRequest | None:
        row = await self._db.query_one("SELECT * FROM ONLY $id", {"id": rid("control_request", request_id)})
        return from_row(ControlRequest, row) if row else None

    async def answer(self, request_id: str, *, ok: bool, message: str, by: str) -> None:
        fields = {"status": "done", "result": message} if ok else {"status": "failed", "error": message}
        ids = await self._db.query_one(
            "UPDATE $id MERGE $fields RETURN VALUE id",
            {"id": rid("control_request", request_id), "fields": {**fields, "answered_by": by}},
        )
        if not ids:
            raise RecordNotFound(f"no control request {request_id}")


def _body(model: Workflow | Checkpoint | ControlRequest) -> dict[str, Any]:
    row = to_row(model, "x", model.id)
    row.pop("id")
    return row
