"""Which of a workflow's memories belong to its current history, after rollbacks and roll-forwards.

A memory records the workflow's newest checkpoint when it was written (its *base*; ``None`` before the first).
Checkpoints form a tree: an ordinary checkpoint follows the one numbered just before it, and a checkpoint made by
a rollback (``rolled_back_to``) restores an earlier one and continues from there. Walking back from the newest
checkpoint (the head) gives the current history. A memory belongs to it when it was written in a stretch of that
history: after the head itself, or after a checkpoint that an ordinary checkpoint of the history followed (that
stretch led to the next state). A rollback's own target does not count: what was written after the target is
exactly what the rollback takes back. So rolling back to #1 hides what was written after #1; rolling "forward"
to #3 afterwards shows what was written before #3 again and hides what the re-run wrote after the rollback.

Tasks that run again from scratch after a rollback (not graph tasks, which resume their thread) would write their
memories again, so those tasks' memories are hidden too.
"""

from __future__ import annotations

from collections.abc import Iterable

from db.models import Checkpoint, Memory


def current_bases(history: Iterable[Checkpoint], head: Checkpoint) -> set[str | None]:
    """The bases (checkpoint ids, ``None`` = before the first) whose memories belong to the history ending at
    ``head``. ``history`` holds the workflow's checkpoints; ``head`` may be among them or not yet stored."""
    by_number = {checkpoint.number: checkpoint for checkpoint in history}
    by_number[head.number] = head
    bases: set[str | None] = {head.id}
    seen: set[int] = set()
    node: Checkpoint | None = head
    while node is not None and node.number not in seen:
        seen.add(node.number)
        if node.rolled_back_to is not None:
            node = by_number.get(node.rolled_back_to)
            continue
        previous = by_number.get(node.number - 1)
        bases.add(previous.id if previous is not None else None)
        node = previous
    return bases


def split_for_rollback(
    memories: Iterable[Memory], bases: set[str | None], rerun_from_scratch: set[str]
) -> tuple[list[str], list[str]]:
    """(ids to hide, ids to show) so that exactly the memories of the current history are shown."""
    hide: list[str] = []
    show: list[str] = []
    for memory in memories:
        keep = memory.checkpoint in bases and memory.task not in rerun_from_scratch
        if keep and memory.hidden_by is not None:
            show.append(memory.id)
        elif not keep and memory.hidden_by is None:
            hide.append(memory.id)
    return hide, show
