"""What the engine lends a graph task: its thread, the checkpointer, approvals and node rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from db.stores import GraphNodeStore
    from engine.graph.approvals import Approvals


def default_thread(workflow: str, task: str) -> str:
    """The thread a graph task runs on until something asks for a fresh one."""
    return f"{workflow}:{task}"


def next_thread(workflow: str, task: str, current: str | None) -> str:
    """A fresh thread for a task (a retry of a finished graph run): ``wf:task#2``, ``wf:task#3``, ..."""
    base = default_thread(workflow, task)
    number = 1
    if current and current.startswith(f"{base}#"):
        suffix = current.rsplit("#", 1)[1]
        number = int(suffix) if suffix.isdigit() else 1
    return f"{base}#{number + 1}"


@dataclass
class GraphSupport:
    thread: str
    saver: Any  # a LangGraph BaseCheckpointSaver (ours: db.checkpointer.SurrealSaver)
    approvals: Approvals
    nodes: GraphNodeStore
    # Called with True when the task starts waiting for a person and False when it goes on: the run marks the
    # task ``waiting`` and stops its timeout clock meanwhile.
    waiting: Callable[[bool], Awaitable[None]]
    pause_listeners: list[Callable[[], None]] = field(default_factory=list)


def thread_finished(state: Any) -> bool:
    """A LangGraph state snapshot of a thread that ran to its end: nothing is left to run.

    Not ``not state.next``: LangGraph leaves out of ``next`` a task whose writes are stored, so a step that finished
    while the checkpoint after it was never stored (the engine stopped in between) has an empty ``next`` although
    the graph goes on from there. Such a task is still in ``tasks`` (with its result), and running the thread on
    applies its writes instead of running it again.
    """
    return not state.tasks and not state.interrupts
