"""What a flight recording holds: one workflow's whole history, as the stores keep it (the in-memory form of an
``.agentdeck`` file; ``engine.recorder.fileformat`` reads and writes it, ``engine.recorder.collect`` gathers it from
a database, ``engine.recorder.load`` puts it into one, ``engine.replay`` plays it back).

Every list is in the order things happened: events by ``seq``, checkpoints by ``number``, graph nodes by
``started_at``, metrics by ``ts``, memories and approvals by ``created_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import Approval, Checkpoint, Event, GraphNode, Memory, Metric, Task, Workflow

#: The first thing in every recording file: tells an agentdeck recording from any other file.
FORMAT = "agentdeck-recording"
#: The file format's version: a reader refuses a newer one with a clear message.
VERSION = 1


@dataclass
class Recording:
    workflow: Workflow
    tasks: list[Task]
    events: list[Event]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    graph_nodes: list[GraphNode] = field(default_factory=list)
    #: The LangGraph checkpointer's rows of the workflow's graph threads, as stored (see ``db.checkpointer``).
    graph_checkpoints: list[dict[str, Any]] = field(default_factory=list)
    memories: list[Memory] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    #: When and by which agentdeck version the file was written (None for a recording built in memory).
    exported_at: datetime | None = None
    agentdeck_version: str | None = None
