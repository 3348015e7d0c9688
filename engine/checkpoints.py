"""Checkpoints: snapshots of a workflow's task states, outputs and agent states, and restoring one.

One is taken at each task completion and on demand. To keep that O(1) per completion, a completion checkpoint
stores only the task that changed (a delta); manual and rollback checkpoints store every task (full). The state
*at* a checkpoint is the last full checkpoint at or before it with the later deltas applied (``state_at``).
Rollback restores that state into the live task table; history is kept: the rollback itself is recorded as a
new full checkpoint and a ``workflow.rolled_back`` event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from db.models import Checkpoint, Task, TaskStatus


def task_state(task: Task) -> dict[str, Any]:
    """The part of a task a rollback restores."""
    return {"status": task.status.value, "output": task.output, "attempts": task.attempts, "error": task.error}


def make(
    workflow: str,
    number: int,
    tasks: dict[str, Task],
    *,
    reason: str,
    task: str | None = None,
    changed: Iterable[str] | None = None,
    event_seq: int = 0,
    agent_states: dict[str, Any] | None = None,
) -> Checkpoint:
    """Checkpoint ``number`` (for the state writer to store): a delta of the ``changed`` tasks, or every task when
    ``changed`` is None."""
    keys = list(tasks) if changed is None else list(changed)
    return Checkpoint(
        workflow=workflow,
        number=number,
        reason=reason,
        task=task,
        event_seq=event_seq,
        full=changed is None,
        task_states={key: task_state(tasks[key]) for key in keys},
        agent_states=agent_states or {},
    )


def state_at(history: list[Checkpoint], number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(task states, agent states) at checkpoint ``number`` of a workflow's ``history`` (oldest first)."""
    upto = [c for c in history if c.number <= number]
    start = 0
    for index in range(len(upto) - 1, -1, -1):
        if upto[index].full:
            start = index
            break
    tasks: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    for checkpoint in upto[start:]:
        tasks.update(checkpoint.task_states)
        agents.update(checkpoint.agent_states)
    return tasks, agents


def restored_state(states: dict[str, Any], key: str) -> dict[str, Any]:
    """The fields task ``key`` gets back: completed tasks keep their output, the rest go back to pending."""
    state = states.get(key)
    if state and state.get("status") == TaskStatus.COMPLETED.value:
        return {
            "status": TaskStatus.COMPLETED,
            "output": state.get("output"),
            "attempts": int(state.get("attempts") or 0),
            "error": None,
        }
    return {
        "status": TaskStatus.PENDING,
        "output": None,
        "error": None,
        "progress": None,
        "started_at": None,
        "finished_at": None,
    }
