"""Putting a ``Recording`` into a database (what ``agentdeck import`` does), so the workflow reads there as it did
where it ran: ``workflows show/list``, ``checkpoints list``, ``workflows history --task`` and ``memory search``.

Rows keep their ids and times; the database sets ``updated_at`` of the workflow and its tasks itself (a ``VALUE``
in the schema), so those two read as the time of the import. The workflow row is written last: until it exists
the workflow is not listed, and an import that failed halfway (a database outage) can be run again, since every
other write stores a row once however often it runs.

An imported workflow is never taken for a live one. A finished one (completed, failed, cancelled) is just
finished. One that had not finished when it was exported (a running, paused or pending workflow, or one whose
engine was stopped) arrives ``stopped`` with no owner and no lease: nothing runs it, the dashboard and
``agentdeck resume`` offer to continue it, and no engine is mistaken for its owner.
"""

from __future__ import annotations

from typing import Literal

from db.connection import Database, redact_url
from db.graph_rows import write_thread_rows
from db.models import Workflow, WorkflowStatus
from db.stores import StateBatch, Stores
from engine.recorder.model import Recording

__all__ = ["AlreadyImported", "imported_workflow", "load"]

# Events and checkpoints per transaction: big enough to be quick, small enough that no statement is huge.
_EVENTS_PER_WRITE = 2_000
_CHECKPOINTS_PER_WRITE = 100
_MEMORIES_PER_WRITE = 500


class AlreadyImported(ValueError):
    """The database already holds the recording's workflow."""


def imported_workflow(workflow: Workflow) -> Workflow:
    """The workflow row an import stores: an unfinished workflow becomes ``stopped``, without owner or lease."""
    if WorkflowStatus(workflow.status).finished:
        return workflow
    return workflow.model_copy(update={"status": WorkflowStatus.STOPPED, "owner": None, "lease_until": None})


async def load(db: Database, rec: Recording, *, if_exists: Literal["error", "skip"] = "error") -> str:
    """Store everything ``rec`` holds in ``db`` and return the workflow's id.

    Args:
        db: An open, migrated database.
        rec: The recording (``read_recording``).
        if_exists: What to do when ``db`` already has the workflow: ``"error"`` raises ``AlreadyImported``,
            ``"skip"`` leaves the database as it is and returns the id (an idempotent import).
    """
    stores = Stores.over(db)
    workflow_id = rec.workflow.id
    if await stores.workflows.get(workflow_id) is not None:
        if if_exists == "skip":
            return workflow_id
        raise AlreadyImported(f"workflow {workflow_id} is already in {redact_url(db.url)}")
    await stores.tasks.put_many(rec.tasks, as_recorded=True)  # updated_at as recorded, not the import's time
    for start in range(0, len(rec.checkpoints), _CHECKPOINTS_PER_WRITE):
        await stores.state.apply(StateBatch(checkpoints=rec.checkpoints[start : start + _CHECKPOINTS_PER_WRITE]))
    events = sorted(rec.events, key=lambda e: e.seq)
    for start in range(0, len(events), _EVENTS_PER_WRITE):
        await stores.state.apply(StateBatch(events=events[start : start + _EVENTS_PER_WRITE]))
    for node in rec.graph_nodes:
        await stores.graph_nodes.put(node)
    await write_thread_rows(db, rec.graph_checkpoints)
    for approval in rec.approvals:
        await stores.approvals.open(approval)
    for start in range(0, len(rec.memories), _MEMORIES_PER_WRITE):
        chunk = rec.memories[start : start + _MEMORIES_PER_WRITE]
        stored = {m.id for m in await stores.memories.get_many([m.id for m in chunk])}
        await stores.memories.add_many([m for m in chunk if m.id not in stored])
    if rec.metrics and not await stores.metrics.query(rec.metrics[0].name, workflow=workflow_id, limit=1):
        await stores.metrics.record_many(rec.metrics)
    try:
        await stores.workflows.create(imported_workflow(rec.workflow), as_recorded=True)
    except ValueError as exc:  # imported by someone else meanwhile
        if if_exists == "skip":
            return workflow_id
        raise AlreadyImported(f"workflow {workflow_id} is already in {redact_url(db.url)}") from exc
    return workflow_id
