"""The write path's batches (engine/writer.py): their budgets, and a refused batch taken apart item by item."""

from __future__ import annotations

from dataclasses import dataclass

from db.stores import StateBatch


@dataclass(frozen=True)
class WriterLimits:
    """Budgets of the write path.

    Attributes:
        batch_bytes: estimated payload per transaction; a larger backlog is written over several ticks.
        batch_rows: rows written per transaction (SurrealDB's in-memory engine grows quadratic in the size of a
            transaction: 1,000 rows in one cost 7 times 10 transactions of 100; around 250 is cheapest on both).
        batch_ops: changes per transaction (many may merge into one row: a task created, started and completed
            within one batch is one row).
        backlog_high: producers are held back above this many estimated bytes waiting to be written...
        backlog_low: ...until the backlog is down to this.
        backlog_ops: ...or above this many ops (no-op tasks produce many small ops quickly).
    """

    batch_bytes: int = 1024 * 1024
    batch_rows: int = 256
    batch_ops: int = 4096
    backlog_high: int = 24 * 1024 * 1024
    backlog_low: int = 12 * 1024 * 1024
    backlog_ops: int = 20_000


def singles(batch: StateBatch) -> list[StateBatch]:
    """One batch per item: a batch the database refuses is retried item by item."""
    items: list[StateBatch] = [StateBatch(new_tasks={key: fields}) for key, fields in batch.new_tasks.items()]
    items += [StateBatch(new_workflows={key: fields}) for key, fields in batch.new_workflows.items()]
    items += [StateBatch(tasks={key: fields}) for key, fields in batch.tasks.items()]
    items += [StateBatch(workflows={key: fields}) for key, fields in batch.workflows.items()]
    items += [StateBatch(checkpoints=[c]) for c in batch.checkpoints]
    items += [StateBatch(events=[e]) for e in batch.events]
    return items


def size_of(batch: StateBatch) -> int:
    """How many items (rows or events) a batch holds."""
    return (
        len(batch.new_tasks)
        + len(batch.new_workflows)
        + len(batch.tasks)
        + len(batch.workflows)
        + len(batch.checkpoints)
        + len(batch.events)
    )


def describe(batch: StateBatch) -> str:
    """A one-batch item, named for the log line that reports it dropped."""
    if batch.new_tasks:
        return f"new task {next(iter(batch.new_tasks))}"
    if batch.new_workflows:
        return f"new workflow {next(iter(batch.new_workflows))}"
    if batch.tasks:
        return f"task fields {batch.tasks}"
    if batch.workflows:
        return f"workflow fields {batch.workflows}"
    if batch.checkpoints:
        return f"checkpoint {batch.checkpoints[0].id}"
    event = batch.events[0]
    return f"event {event.workflow}#{event.seq} {event.type}"
