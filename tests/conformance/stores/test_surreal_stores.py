"""The SurrealDB stores against the conformance suite, on ``mem://`` and on a temp ``surrealkv://`` store.

Another implementation joins with a module like this one: a ``stores`` fixture yielding a fresh, empty
``Stores`` per test, and one subclass per conformance class.
"""

from __future__ import annotations

import pytest

from db import Database, connect
from db.models import (
    Checkpoint,
    Event,
    Memory,
    Metric,
    Task,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)
from db.stores import Stores
from tests.conformance.stores import (
    ApprovalStoreConformance,
    CheckpointStoreConformance,
    ControlRequestStoreConformance,
    EventStoreConformance,
    GraphNodeStoreConformance,
    MemoryStoreConformance,
    MetricStoreConformance,
    TaskStoreConformance,
    WorkflowStoreConformance,
)
from tests.conformance.stores._data import at, random_vector


@pytest.fixture
def stores(database: Database) -> Stores:
    """Every SurrealDB store over a fresh, migrated database (``database`` runs on mem:// and surrealkv://)."""
    return Stores.over(database)


class TestSurrealWorkflowStore(WorkflowStoreConformance):
    pass


class TestSurrealTaskStore(TaskStoreConformance):
    pass


class TestSurrealCheckpointStore(CheckpointStoreConformance):
    pass


class TestSurrealEventStore(EventStoreConformance):
    pass


class TestSurrealMemoryStore(MemoryStoreConformance):
    pass


class TestSurrealMetricStore(MetricStoreConformance):
    pass


class TestSurrealControlRequestStore(ControlRequestStoreConformance):
    pass


@pytest.mark.parametrize("db_url", ["surrealkv"], indirect=True)
async def test_surrealkv_data_survives_closing_and_reopening(db_url: str) -> None:
    """What one process wrote is there for the next: every store, and the vector index behind search."""
    workflow = Workflow(id="wf-kept", name="kept", status=WorkflowStatus.PAUSED, vars={"k": {"v": 1}})
    task = Task(workflow="wf-kept", key="t", agent="writer", status=TaskStatus.PAUSED, output={"draft": [1, 2]})
    checkpoint = Checkpoint(id="cp-kept", workflow="wf-kept", number=1, reason="paused", task_states={"t": {}})
    events = [Event(workflow="wf-kept", seq=seq, type="task.progress", ts=at(seq)) for seq in range(1, 51)]
    memories = [
        Memory(id=f"mem-{i}", agent="writer", content=f"fact {i}", embedding=random_vector(i), created_at=at(i))
        for i in range(20)
    ]
    metric = Metric(ts=at(0), name="tokens", value=12.0, workflow="wf-kept")

    async with connect(db_url) as db:
        stores = Stores.over(db)
        await stores.workflows.create(workflow)
        await stores.tasks.put_many([task])
        await stores.checkpoints.create(checkpoint)
        await stores.events.append_many(events)
        await stores.memories.add_many(memories)
        await stores.metrics.record_many([metric])

    async with connect(db_url) as db:
        stores = Stores.over(db)
        kept_workflow = await stores.workflows.get("wf-kept")
        kept_task = await stores.tasks.get("wf-kept", "t")
        kept_checkpoint = await stores.checkpoints.get("cp-kept")
        kept_events = await stores.events.list("wf-kept")
        last_seq = await stores.events.last_seq("wf-kept")
        kept_memory = await stores.memories.get("mem-7")
        hits = await stores.memories.search(random_vector(7), k=1)
        kept_metrics = await stores.metrics.query("tokens")

    assert kept_workflow is not None
    assert kept_workflow.model_dump(exclude={"updated_at"}) == workflow.model_dump(exclude={"updated_at"})
    assert kept_task is not None
    assert kept_task.model_dump(exclude={"updated_at"}) == task.model_dump(exclude={"updated_at"})
    assert kept_checkpoint == checkpoint
    assert [e.model_dump() for e in kept_events] == [e.model_dump() for e in events]
    assert last_seq == 50
    assert kept_memory is not None
    assert kept_memory.model_dump(exclude={"embedding"}) == memories[7].model_dump(exclude={"embedding"})
    assert kept_memory.embedding == pytest.approx(memories[7].embedding, rel=1e-6, abs=1e-7)  # stored as float32
    assert [h.memory.id for h in hits] == ["mem-7"]
    assert [m.model_dump() for m in kept_metrics] == [metric.model_dump()]


class TestSurrealGraphNodeStore(GraphNodeStoreConformance):
    pass


class TestSurrealApprovalStore(ApprovalStoreConformance):
    pass
