"""Typed records that go in and come out of the stores (pydantic; no Textual, no engine).

Record ids are plain strings here; the stores translate them to and from SurrealDB record ids.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


_PROCESS_TAG = uuid.uuid4().hex[:16]
_EVENT_COUNTER = itertools.count(1)


def new_event_id() -> str:
    """A unique event id without a system call: a random per-process tag and a counter (events are the engine's
    most frequent record; ``uuid4`` per event cost ~0.2 ms of ``os.urandom`` per task)."""
    return f"{_PROCESS_TAG}{next(_EVENT_COUNTER):012x}"


def new_id(prefix: str = "") -> str:
    """A short random id, readable in a terminal (``wf-3f9c1a2b7d``)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Its engine was closed on purpose (``q`` in the dashboard) while it ran: not finished, resumable at once.
    #: A workflow whose engine crashed or was killed stays ``running``/``paused`` and is resumable once its owner
    #: is known to be gone (``engine.lease_expired``).
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"  # for a person: an approval prompt is open
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


class Record(BaseModel):
    """Base for stored records; fields the database adds that a model does not know are ignored."""

    model_config = ConfigDict(extra="ignore", use_enum_values=False)


class Workflow(Record):
    id: str = Field(default_factory=lambda: new_id("wf-"))
    name: str
    description: str = ""
    status: WorkflowStatus = WorkflowStatus.PENDING
    spec: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None
    lease_until: datetime | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Started from a moment of another workflow (``Engine.diverge``): ``{workflow, seq, checkpoint}``.
    diverged_from: dict[str, Any] | None = None


class Task(Record):
    workflow: str
    key: str
    agent: str
    status: TaskStatus = TaskStatus.PENDING
    depends_on: list[str] = Field(default_factory=list)
    input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    progress: float | None = None
    thread: str | None = None  # graph agents: the LangGraph thread the task runs on (None: the default one)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def id(self) -> str:
        return task_record_key(self.workflow, self.key)


def task_record_key(workflow: str, key: str) -> str:
    """The task table's record key: one row per (workflow, task key)."""
    return f"{workflow}/{key}"


class Checkpoint(Record):
    id: str = Field(default_factory=lambda: new_id("cp-"))
    workflow: str
    number: int
    reason: str
    task: str | None = None
    event_seq: int = 0
    # ``full``: task_states/agent_states hold every task and agent. Otherwise only what changed since the
    # previous checkpoint; the state at a checkpoint is the last full one with the later deltas applied.
    full: bool = True
    task_states: dict[str, Any] = Field(default_factory=dict)
    agent_states: dict[str, Any] = Field(default_factory=dict)
    #: Set on the checkpoint a rollback makes: the number of the checkpoint whose state it restored.
    rolled_back_to: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EventType(StrEnum):
    """Every event type the engine emits: the vocabulary of ``Event.type``.

    A ``StrEnum``, so a member *is* its string: it equals, hashes and formats as ``"task.output"``, and an event
    built with one stores, publishes and prints the plain string. Producers use the members; readers may compare
    ``event.type`` with a member or with a string alike.
    """

    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_PAUSED = "workflow.paused"
    WORKFLOW_RESUMED = "workflow.resumed"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_ROLLED_BACK = "workflow.rolled_back"
    WORKFLOW_STOPPED = "workflow.stopped"  # its engine was closed on purpose; resumable (``agentdeck resume``)

    TASK_QUEUED = "task.queued"
    TASK_STARTED = "task.started"
    TASK_OUTPUT = "task.output"
    TASK_PROGRESS = "task.progress"
    TASK_PAUSED = "task.paused"
    TASK_RESUMED = "task.resumed"
    TASK_WAITING = "task.waiting"  # for a person: an approval prompt is open
    TASK_RETRYING = "task.retrying"
    #: A worker took the task's command (``sandbox: worker``): ``{worker}``, its ``host:pid``; again when another
    #: worker takes it over.
    TASK_ASSIGNED = "task.assigned"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    TASK_CANCELLED = "task.cancelled"
    TASK_SKIPPED = "task.skipped"

    CHECKPOINT_CREATED = "checkpoint.created"
    MEMORY_WRITTEN = "memory.written"

    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_DENIED = "approval.denied"
    APPROVAL_ANSWERED = "approval.answered"  # with a value that is neither yes nor no

    GRAPH_FORKED = "graph.forked"  # time travel: a graph task's thread forked at a checkpoint

    NODE_STARTED = "node.started"
    NODE_COMPLETED = "node.completed"
    NODE_FAILED = "node.failed"
    NODE_INTERRUPTED = "node.interrupted"
    NODE_CANCELLED = "node.cancelled"

    LLM_USAGE = "llm.usage"  # one model call's tokens and cost
    TOOL_CALLED = "tool.called"  # an agent called a tool: {tool, args, call} (``call`` digests name + arguments)

    WATCHPOINT_ADDED = "watchpoint.added"
    WATCHPOINT_REMOVED = "watchpoint.removed"
    #: A watchpoint's condition held: the workflow is paused; data says which condition and the values that made it
    #: true (``engine.watch``).
    WATCHPOINT_TRIGGERED = "watchpoint.triggered"

    #: In the design's event contract; the engine stores metric samples as ``agent_metric`` rows and emits none.
    METRIC = "metric"


#: The event announcing a workflow's final status.
WORKFLOW_END_EVENTS: dict[WorkflowStatus, EventType] = {
    WorkflowStatus.COMPLETED: EventType.WORKFLOW_COMPLETED,
    WorkflowStatus.FAILED: EventType.WORKFLOW_FAILED,
    WorkflowStatus.CANCELLED: EventType.WORKFLOW_CANCELLED,
}

#: The events that end a task's run (a skipped task never ran).
TASK_RUN_END_EVENTS = frozenset((EventType.TASK_COMPLETED, EventType.TASK_FAILED, EventType.TASK_CANCELLED))

#: The event announcing that a graph node's execution ended, by the ``GraphNode.status`` it ended with.
NODE_END_EVENTS: dict[str, EventType] = {
    "completed": EventType.NODE_COMPLETED,
    "failed": EventType.NODE_FAILED,
    "interrupted": EventType.NODE_INTERRUPTED,
    "cancelled": EventType.NODE_CANCELLED,
}


class Event(Record):
    """One event: the same shape on the bus, in the database, in ``--json`` output and in the UI.

    ``type`` is a plain ``str``, not an ``EventType``: agents emit types of their own (``TaskContext.event``) and a
    database may hold types this version no longer knows, and both must still load. The engine emits members of
    ``EventType``, which are strings, so what is stored and sent is the same either way.

    The properties below read what the common types carry in ``data``, with the producers' defaults.
    """

    id: str = Field(default_factory=new_event_id)
    ts: datetime = Field(default_factory=utcnow)
    seq: int
    type: str
    workflow: str
    task: str | None = None
    agent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: ISO 8601 UTC timestamp, optional keys omitted when empty."""
        out: dict[str, Any] = {
            "id": self.id,
            "ts": self.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "seq": self.seq,
            "type": self.type,
            "workflow": self.workflow,
        }
        if self.task is not None:
            out["task"] = self.task
        if self.agent is not None:
            out["agent"] = self.agent
        out["data"] = self.data
        return out

    @property
    def output_lines(self) -> list[str]:
        """The lines a ``task.output`` event carries.

        Output is stored in chunks: ``data = {"stream": "stdout", "lines": [...]}`` holds consecutive lines of one
        stream. Events written before chunking carry one ``line``; both shapes are read here.
        """
        lines = self.data.get("lines")
        if isinstance(lines, list):
            return [str(line) for line in lines]
        line = self.data.get("line")
        return [] if line is None else [str(line)]

    @property
    def stream(self) -> str:
        """The stream a ``task.output`` chunk was printed on: ``stdout``, ``stderr``, ``graph``, ``llm``..."""
        return str(self.data.get("stream", "stdout"))

    @property
    def attempt(self) -> int:
        """Which attempt a ``task.started`` or ``task.retrying`` event is about (1 for the first)."""
        return int(self.data.get("attempt", 1))

    @property
    def progress(self) -> float:
        """A ``task.progress`` event's fraction done, in [0, 1]."""
        return float(self.data.get("progress", 0.0))

    @property
    def error(self) -> str | None:
        """What went wrong (``task.failed``, ``task.retrying``, ``node.failed``), or None."""
        error = self.data.get("error")
        return None if error is None else str(error)

    @property
    def approval_id(self) -> str | None:
        """The approval an ``approval.*`` event is about (``<workflow>/<task>/<interrupt>``), or None."""
        approval = self.data.get("approval")
        return approval if isinstance(approval, str) else None


MEMORY_TYPES = ("short_term", "long_term", "checkpoint")


class Memory(Record):
    """Something an agent remembered, with where it came from: the workflow, task, attempt, graph step and the
    workflow's newest checkpoint when it was written. ``hidden_by`` is the rollback checkpoint that took it back
    (kept for history, left out of search); a short-term memory is left out of search after ``expires_at``."""

    id: str = Field(default_factory=lambda: new_id("mem-"))
    agent: str
    content: str
    embedding: list[float]
    memory_type: str = "long_term"
    workflow: str | None = None
    task: str | None = None
    attempt: int | None = None
    graph_step: int | None = None
    checkpoint: str | None = None
    hidden_by: str | None = None
    expires_at: datetime | None = None
    embedder: str | None = None
    relevance: float = 1.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class MemoryHit(BaseModel):
    memory: Memory
    score: float  # cosine similarity, 1.0 = identical


class Metric(Record):
    """One interval of one metric: ``value`` is the sum of the ``count`` samples taken in it (their mean is
    ``value / count``), which ranged from ``min`` to ``max``."""

    ts: datetime = Field(default_factory=utcnow)
    name: str
    value: float
    agent: str | None = None
    workflow: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    count: int = 1
    min: float | None = None
    max: float | None = None


class ControlRequest(Record):
    """A control asked of the engine that owns a workflow, through the database (server databases)."""

    id: str = Field(default_factory=lambda: new_id("ctl-"))
    workflow: str
    op: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: str = "pending"  # pending | done | failed
    result: str | None = None
    error: str | None = None
    answered_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Watchpoint(Record):
    """A condition on a workflow's event stream that pauses it when it holds (``engine.watch``).

    Declared in the workflow file (``watch:`` at workflow or task level, ``origin="file"``) or added while it runs
    (``origin="live"``: the CLI or the dashboard). ``task`` scopes it to one task's events.
    """

    id: str = Field(default_factory=lambda: new_id("wp-"))
    workflow: str
    when: str  # the expression, as written
    task: str | None = None
    name: str | None = None
    origin: str = "live"  # file | live
    triggered: int = 0  # times it paused the workflow
    last_triggered_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def label(self) -> str:
        """How messages name it: its name, else its expression."""
        return self.name or self.when


class GraphNode(Record):
    """One execution of one node of a graph task (what the tree shows under the task)."""

    id: str  # "<workflow>/<task>/<LangGraph's task id of this execution>"
    workflow: str
    task: str
    thread: str
    node: str
    step: int = 0
    status: str = "running"  # running | completed | failed | interrupted | cancelled
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    ANSWERED = "answered"


#: The event announcing an approval's answer, by the status the answer gave it.
APPROVAL_ANSWER_EVENTS: dict[ApprovalStatus, EventType] = {
    ApprovalStatus.GRANTED: EventType.APPROVAL_GRANTED,
    ApprovalStatus.DENIED: EventType.APPROVAL_DENIED,
    ApprovalStatus.ANSWERED: EventType.APPROVAL_ANSWERED,
}


class Approval(Record):
    """A question a graph asked a person (``interrupt()``), and its answer."""

    workflow: str
    task: str
    interrupt: str  # LangGraph's interrupt id
    node: str | None = None
    prompt: Any = None
    default: Any = None
    deadline: datetime | None = None
    status: ApprovalStatus = ApprovalStatus.PENDING
    value: Any = None
    answered_by: str | None = None
    #: False while an answer written by a process that does not own the run waits for the owner to announce it.
    announced: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.workflow}/{self.task}/{self.interrupt}"
