"""The store interfaces: what the engine and the dashboard may ask of persisted state.

Each interface has one implementation over SurrealDB (``db.stores.surreal_*``) and one conformance suite
(``tests/unit/stores``) that any implementation must pass, in the style of LangGraph's ``BaseCheckpointSaver``.
Methods raise ``NotImplementedError`` until an implementation provides them.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from db.models import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    ControlRequest,
    Event,
    GraphNode,
    Memory,
    MemoryHit,
    Metric,
    Task,
    Watchpoint,
    Workflow,
    WorkflowStatus,
)


class RecordNotFound(LookupError):
    """The record asked for does not exist."""


class WorkflowStore(ABC):
    @abstractmethod
    async def create(self, workflow: Workflow, *, as_recorded: bool = False) -> Workflow:
        """Store a new workflow; raises ``ValueError`` if the id is taken. ``as_recorded`` keeps its ``updated_at``
        (an imported recording); otherwise the database sets it."""
        raise NotImplementedError

    @abstractmethod
    async def get(self, workflow_id: str) -> Workflow | None:
        raise NotImplementedError

    @abstractmethod
    async def list(self, status: WorkflowStatus | None = None, limit: int = 100) -> list[Workflow]:
        """Newest first."""
        raise NotImplementedError

    @abstractmethod
    async def update(self, workflow_id: str, **changes: Any) -> Workflow:
        """Change some fields; ``None`` clears an optional field. Raises ``RecordNotFound``."""
        raise NotImplementedError


@dataclass
class StateBatch:
    """What the engine changed in one tick: applied together, in one transaction.

    Attributes:
        new_tasks: task rows to create, ``(workflow, task key) -> {field: value}`` (a workflow's tasks are created
            before the workflow row, so a workflow exists only once all its tasks do).
        new_workflows: workflow rows to create, ``workflow id -> {field: value}``.
        tasks: changes to existing tasks, ``(workflow, task key) -> {field: value}``; ``None`` clears a field.
        workflows: changes to existing workflows, ``workflow id -> {field: value}``.
        checkpoints: new checkpoint rows.
        events: new events (seq assigned).
    """

    new_tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    new_workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.new_tasks or self.new_workflows or self.tasks or self.workflows or self.checkpoints or self.events
        )


class StateBatchStore(ABC):
    """Group commit: a whole ``StateBatch`` in one transaction and one round trip."""

    def prepare(self, batch: StateBatch) -> Any:
        """Whatever can be done for ``batch`` before it is written (encoding it), for ``apply_prepared``: a writer
        prepares its next batch while the database executes the one before. Raises what encoding raises."""
        return batch

    async def apply_prepared(self, prepared: Any) -> None:
        """``apply`` of what ``prepare`` returned; same guarantees."""
        await self.apply(prepared)

    @abstractmethod
    async def apply(self, batch: StateBatch) -> None:
        """Store ``batch`` atomically. Idempotent: applying the same batch twice stores it once.
        Raises ``QueryFailed`` (nothing stored) or ``DatabaseUnavailable`` (unknown: apply it again)."""
        raise NotImplementedError


class TaskStore(ABC):
    @abstractmethod
    async def put_many(self, tasks: Sequence[Task], *, as_recorded: bool = False) -> None:
        """Create or replace tasks in one round trip. ``as_recorded`` keeps their ``updated_at`` (an imported
        recording); otherwise the database sets it."""
        raise NotImplementedError

    @abstractmethod
    async def get(self, workflow_id: str, key: str) -> Task | None:
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str) -> list[Task]:
        """The workflow's tasks in creation order."""
        raise NotImplementedError

    @abstractmethod
    async def update(self, workflow_id: str, key: str, **changes: Any) -> Task:
        """Change some fields; ``None`` clears an optional field. Raises ``RecordNotFound``."""
        raise NotImplementedError

    @abstractmethod
    async def set(self, workflow_id: str, key: str, **changes: Any) -> None:
        """``update`` without reading the task back (the engine's hot path). Raises ``RecordNotFound``."""
        raise NotImplementedError


class CheckpointStore(ABC):
    @abstractmethod
    async def create(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store a checkpoint; ``number`` must be unique within its workflow (``ValueError`` otherwise)."""
        raise NotImplementedError

    @abstractmethod
    async def get(self, checkpoint_id: str) -> Checkpoint | None:
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str) -> list[Checkpoint]:
        """Oldest first."""
        raise NotImplementedError

    @abstractmethod
    async def latest(self, workflow_id: str) -> Checkpoint | None:
        raise NotImplementedError


class EventStore(ABC):
    @abstractmethod
    async def append_many(self, events: Sequence[Event]) -> None:
        """Persist a batch in one round trip; a repeated (workflow, seq) is rejected with ``ValueError``."""
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """Events with ``seq > after_seq``, in seq order."""
        raise NotImplementedError

    @abstractmethod
    async def last_seq(self, workflow_id: str) -> int:
        """The highest stored seq, 0 when there are none."""
        raise NotImplementedError


@dataclass
class MemoryPage:
    """A page of memories for an index: the memories without their vectors (``embedding`` is empty) and the
    vectors, float32, in the same order."""

    memories: list[Memory]
    vectors: list[np.ndarray[Any, np.dtype[np.float32]]]


class MemoryStore(ABC):
    @abstractmethod
    async def add_many(self, memories: Sequence[Memory]) -> None:
        raise NotImplementedError

    @abstractmethod
    async def get(self, memory_id: str) -> Memory | None:
        raise NotImplementedError

    @abstractmethod
    async def search(self, embedding: Sequence[float], k: int = 5, agent: str | None = None) -> list[MemoryHit]:
        """The ``k`` memories nearest to ``embedding`` (cosine), best first, optionally for one agent: the database's
        own HNSW search over every stored memory, hidden and expired ones included. The engine searches through
        its in-process index (``engine.memory``), which is kept in step with this table and checked against it."""
        raise NotImplementedError

    @abstractmethod
    async def list(self, agent: str | None = None, limit: int = 100, workflow: str | None = None) -> list[Memory]:
        """Newest first, optionally of one agent and/or one workflow (hidden and expired ones included)."""
        raise NotImplementedError

    @abstractmethod
    async def page(self, after: str | None, limit: int) -> MemoryPage:
        """Up to ``limit`` memories in id order, starting after id ``after`` (``None``: from the first), with their
        vectors apart: every memory, page by page, for an index to be built from."""
        raise NotImplementedError

    @abstractmethod
    async def get_many(self, memory_ids: Sequence[str]) -> builtins.list[Memory]:
        """The memories of these ids that exist, in no particular order."""
        raise NotImplementedError

    @abstractmethod
    async def of_workflow(self, workflow_id: str) -> builtins.list[Memory]:
        """A workflow's memories with their provenance but without their vectors (``embedding`` is empty)."""
        raise NotImplementedError

    @abstractmethod
    async def set_hidden(self, memory_ids: Sequence[str], hidden_by: str | None) -> None:
        """Hide memories (``hidden_by``: the rollback checkpoint that took them back) or, with ``None``, show them."""
        raise NotImplementedError

    @abstractmethod
    async def delete_expired(self, now: datetime) -> builtins.list[str]:
        """Delete memories whose ``expires_at`` has passed; returns their ids."""
        raise NotImplementedError


class MetricStore(ABC):
    @abstractmethod
    async def record_many(self, metrics: Sequence[Metric]) -> None:
        raise NotImplementedError

    @abstractmethod
    async def query(
        self,
        name: str,
        since: datetime | None = None,
        agent: str | None = None,
        workflow: str | None = None,
        limit: int = 1000,
    ) -> list[Metric]:
        """Samples of one metric, oldest first."""
        raise NotImplementedError


class ControlRequestStore(ABC):
    @abstractmethod
    async def create(self, request: ControlRequest) -> ControlRequest:
        raise NotImplementedError

    @abstractmethod
    async def get(self, request_id: str) -> ControlRequest | None:
        raise NotImplementedError

    @abstractmethod
    async def answer(self, request_id: str, *, ok: bool, message: str, by: str) -> None:
        """Record the answer: ``done`` with ``message`` as the result, or ``failed`` with it as the error."""
        raise NotImplementedError


class GraphNodeStore(ABC):
    """Node executions of graph tasks."""

    @abstractmethod
    async def put(self, node: GraphNode) -> None:
        """Insert or replace the row of one node execution (keyed by its ``id``)."""
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str, task: str | None = None) -> list[GraphNode]:
        """A workflow's (or one task's) node executions, oldest first."""
        raise NotImplementedError


class ApprovalStore(ABC):
    """Questions graphs asked people, and the answers."""

    @abstractmethod
    async def open(self, approval: Approval) -> tuple[Approval, bool]:
        """Store ``approval`` unless one with its id exists; returns (the stored one, whether it is new)."""
        raise NotImplementedError

    @abstractmethod
    async def get(self, approval_id: str) -> Approval | None:
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str, *, pending_only: bool = False) -> list[Approval]:
        """A workflow's approvals, oldest first."""
        raise NotImplementedError

    @abstractmethod
    async def answer(
        self, approval_id: str, *, status: ApprovalStatus, value: Any, by: str, announced: bool = True
    ) -> Approval | None:
        """Answer a pending approval; returns it answered, or None when it was not pending (first answer wins).
        ``announced=False``: the answer's event is still to be emitted, by the process that owns the run."""
        raise NotImplementedError


class WatchpointStore(ABC):
    """Watchpoints of workflows (``engine.watch``): kept so a resumed workflow keeps them."""

    @abstractmethod
    async def put(self, watchpoint: Watchpoint) -> None:
        """Insert or replace one watchpoint (keyed by its ``id``)."""
        raise NotImplementedError

    @abstractmethod
    async def list(self, workflow_id: str) -> list[Watchpoint]:
        """A workflow's watchpoints, oldest first."""
        raise NotImplementedError

    @abstractmethod
    async def get(self, watchpoint_id: str) -> Watchpoint | None:
        raise NotImplementedError

    @abstractmethod
    async def delete(self, watchpoint_id: str) -> bool:
        """Remove one; returns whether it existed."""
        raise NotImplementedError

    @abstractmethod
    async def count_trigger(self, watchpoint_id: str, at: datetime) -> None:
        """Count one trigger (``triggered`` + 1, ``last_triggered_at``); nothing if it was removed meanwhile."""
        raise NotImplementedError
