"""Typed stores over the database: one interface per table, one SurrealDB implementation of each."""

from __future__ import annotations

from dataclasses import dataclass

from db.connection import Database
from db.stores.interfaces import (
    ApprovalStore,
    CheckpointStore,
    ControlRequestStore,
    EventStore,
    GraphNodeStore,
    MemoryStore,
    MetricStore,
    RecordNotFound,
    StateBatch,
    StateBatchStore,
    TaskStore,
    WatchpointStore,
    WorkflowStore,
)
from db.stores.surreal_agent import SurrealMetricStore
from db.stores.surreal_batch import SurrealStateBatchStore
from db.stores.surreal_core import (
    SurrealCheckpointStore,
    SurrealControlRequestStore,
    SurrealEventStore,
    SurrealTaskStore,
    SurrealWorkflowStore,
)
from db.stores.surreal_graph import SurrealApprovalStore, SurrealGraphNodeStore
from db.stores.surreal_memory import SurrealMemoryStore
from db.stores.surreal_watch import SurrealWatchpointStore


@dataclass(frozen=True)
class Stores:
    """Every store, over one database connection."""

    workflows: WorkflowStore
    tasks: TaskStore
    checkpoints: CheckpointStore
    events: EventStore
    memories: MemoryStore
    metrics: MetricStore
    control_requests: ControlRequestStore
    graph_nodes: GraphNodeStore
    approvals: ApprovalStore
    state: StateBatchStore
    watchpoints: WatchpointStore

    @classmethod
    def over(cls, db: Database) -> Stores:
        """The SurrealDB implementation of every store."""
        return cls(
            workflows=SurrealWorkflowStore(db),
            tasks=SurrealTaskStore(db),
            checkpoints=SurrealCheckpointStore(db),
            events=SurrealEventStore(db),
            memories=SurrealMemoryStore(db),
            metrics=SurrealMetricStore(db),
            control_requests=SurrealControlRequestStore(db),
            graph_nodes=SurrealGraphNodeStore(db),
            approvals=SurrealApprovalStore(db),
            state=SurrealStateBatchStore(db),
            watchpoints=SurrealWatchpointStore(db),
        )


__all__ = [
    "ApprovalStore",
    "CheckpointStore",
    "ControlRequestStore",
    "EventStore",
    "GraphNodeStore",
    "MemoryStore",
    "MetricStore",
    "RecordNotFound",
    "StateBatch",
    "StateBatchStore",
    "Stores",
    "TaskStore",
    "WatchpointStore",
    "WorkflowStore",
]
