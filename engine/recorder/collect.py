"""Gathering one workflow's whole history from a database into a ``Recording`` (what ``agentdeck export`` writes).

Everything is read through the stores, and the LangGraph checkpointer's rows as stored (``db.graph_rows``): a
graph task's threads are named ``<workflow>:<task>`` (and ``<workflow>:<task>#2``... for fresh threads,
``engine.graph.support``), so the workflow's threads are those whose id starts with ``<workflow>:``.

Secrets: the engine never stores a secret's value. A task's ``secrets`` are environment variable *names* in the
spec, and their values are scrubbed from output before it becomes an event; ``scrub_secrets`` additionally
replaces any value of those variables found in the current environment wherever it appears in the recording
(belt and braces for output an agent returned unscrubbed).

A workflow that is still running is exported as far as it is stored (``is_live`` tells, and the command line
says so): the stores are read one after the other, not in one transaction, so such a recording can
hold an event a little newer than a task row; a finished workflow's rows no longer change.
"""

from __future__ import annotations

import os
from typing import Any

from db.connection import Database
from db.graph_rows import read_thread_rows
from db.models import Event, Memory, Metric, WorkflowStatus
from db.stores import Stores
from engine.graph.support import default_thread
from engine.recorder.model import Recording

__all__ = ["UnknownWorkflow", "collect", "graph_thread_prefix", "is_live", "scrub_secrets", "secret_names"]

_MEMORY_PAGE = 500
_METRICS_LIMIT = 1_000_000


class UnknownWorkflow(LookupError):
    """The database has no workflow with that id."""


def graph_thread_prefix(workflow_id: str) -> str:
    """Every LangGraph thread of the workflow's graph tasks starts with this (``engine.graph.support``)."""
    return default_thread(workflow_id, "")


async def collect(db: Database, workflow_id: str) -> Recording:
    """Everything stored about ``workflow_id``; raises ``UnknownWorkflow`` when there is no such workflow."""
    stores = Stores.over(db)
    workflow = await stores.workflows.get(workflow_id)
    if workflow is None:
        raise UnknownWorkflow(f"no workflow {workflow_id!r} in this database")
    rec = Recording(
        workflow=workflow,
        tasks=await stores.tasks.list(workflow_id),
        events=await _events(stores, workflow_id),
        checkpoints=await stores.checkpoints.list(workflow_id),
        graph_nodes=await stores.graph_nodes.list(workflow_id),
        graph_checkpoints=await read_thread_rows(db, graph_thread_prefix(workflow_id)),
        memories=await _memories(stores, workflow_id),
        metrics=await _metrics(db, stores, workflow_id),
        approvals=await stores.approvals.list(workflow_id),
    )
    return scrub_secrets(rec, secret_names(rec))


async def _events(stores: Stores, workflow_id: str) -> list[Event]:
    # One read: ``list`` pages by stored page rows, not by events, so reading in slices of N events re-reads up to
    # N pages of events each time (measured: 100k events in slices of 10k took 20 s, in one read ~4 s).
    return await stores.events.list(workflow_id)


async def _memories(stores: Stores, workflow_id: str) -> list[Memory]:
    """The workflow's memories with their vectors (``of_workflow`` leaves them out), oldest first."""
    listed = await stores.memories.of_workflow(workflow_id)
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(listed), _MEMORY_PAGE):
        chunk = [m.id for m in listed[start : start + _MEMORY_PAGE]]
        vectors.update({m.id: m.embedding for m in await stores.memories.get_many(chunk)})
    return [m.model_copy(update={"embedding": vectors.get(m.id, [])}) for m in listed]


async def _metrics(db: Database, stores: Stores, workflow_id: str) -> list[Metric]:
    names = await db.query_one(
        "SELECT VALUE name FROM agent_metric WHERE workflow = $workflow GROUP BY name", {"workflow": workflow_id}
    )
    found: list[Metric] = []
    for name in sorted({str(n) for n in names or []}):
        found.extend(await stores.metrics.query(name, workflow=workflow_id, limit=_METRICS_LIMIT))
    return sorted(found, key=lambda m: m.ts)


def secret_names(rec: Recording) -> set[str]:
    """The environment variables the workflow's tasks take as secrets (``secrets:`` in its spec)."""
    names: set[str] = set()
    for task in rec.workflow.spec.get("tasks") or []:
        if isinstance(task, dict):
            names.update(str(name) for name in task.get("secrets") or [])
    return names


def scrub_secrets(rec: Recording, names: set[str]) -> Recording:
    """``rec`` with every value the variables ``names`` hold in this environment replaced by ``***``.

    The engine already keeps them out of what it stores; this only rewrites a recording in which one turns up.
    Values shorter than 4 characters are left alone (replacing "1" everywhere would wreck the recording).
    """
    values = sorted({v for n in names if len(v := os.environ.get(n, "")) >= 4}, key=len, reverse=True)
    if not values:
        return rec

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for secret in values:
                if secret in value:
                    value = value.replace(secret, "***")
            return value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    def model(m: Any) -> Any:
        dumped = m.model_dump()
        cleaned = clean(dumped)
        return m if cleaned == dumped else type(m).model_validate(cleaned)

    rec.workflow = model(rec.workflow)
    for name in ("tasks", "events", "checkpoints", "graph_nodes", "memories", "metrics", "approvals"):
        setattr(rec, name, [model(m) for m in getattr(rec, name)])
    return rec


def is_live(rec: Recording) -> bool:
    """True when the recorded workflow had not finished when it was collected."""
    return not WorkflowStatus(rec.workflow.status).finished
