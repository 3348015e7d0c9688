"""The engine's one write path: group commit.

Everything the engine changes — task and workflow fields, checkpoints, events (output included) — is appended to
an in-memory log, synchronously and in order. One background task takes the longest prefix of the log that fits
a batch budget, merges it (a task's fields changed three times in a tick are written once) and stores it as one
transaction in one round trip (``StateBatchStore.apply``). While that write is under way the next batch
accumulates, so under load a tick carries many tasks' changes; when idle, a change is written at once.

What this guarantees:

- **Order.** Each commit is a prefix of the log, so the database always holds a state the engine really passed
  through; a crash loses only a suffix.
- **Publish after store.** Events reach subscribers (``on_committed``) only once they are stored, so an event
  seen live is never lost in a crash and its ``seq`` is never handed out again.
- **Bounded memory.** ``writable`` / ``wait_writable()`` tell producers (the scheduler, output readers) to hold
  back while the backlog is above its high-water mark.
- **Retries.** A batch whose write failed because the database was unreachable is applied again (writes are
  idempotent) with backoff, with one log line when the database goes away and one when it is back. A batch the
  database refuses (a bug) is retried an item at a time so one bad item cannot take its neighbours with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from db.errors import DatabaseUnavailable, QueryFailed
from db.models import Checkpoint, Event, Task, Workflow
from db.stores import StateBatch, StateBatchStore
from engine.writer_batches import WriterLimits, describe, singles, size_of

log = logging.getLogger(__name__)

#: Size charged for an op without a payload estimate (a task or workflow field change, a small event).
OP_BYTES = 256

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


class StateWriter:
    """Group commit of engine state. Append with ``task``/``workflow``/``checkpoint``/``event`` (synchronous, never
    waits); ``await commit()`` waits until everything appended so far is stored.

    Args:
        store: where batches go.
        limits: batch and backlog budgets.
    """

    def __init__(self, store: StateBatchStore, limits: WriterLimits | None = None) -> None:
        self._store = store
        self.limits = limits or WriterLimits()
        self._ops: deque[tuple[str, Any, Any, int]] = deque()
        self._backlog_bytes = 0
        self._appended = 0
        self._committed = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._abandoned = False
        self._down = False
        #: Called with the events of each stored batch, in order (the recorder publishes them).
        self.on_committed: Callable[[list[Event]], None] = lambda events: None
        self._before_batch: list[Callable[[], None]] = []
        #: Batches stored and their sizes, for benchmarks and the metrics view.
        self.batches = 0
        self.ops_written = 0

    # ---- appending (synchronous, the engine's hot path) ----------------------------------------------------

    def new_task(self, task: Task) -> None:
        """Create a task row (its fields as they are now; later changes follow as ``task`` ops). Fields the
        schema computes itself (``updated_at``) or that are at its defaults are left out: each value sent is a
        value SurrealDB converts and checks. ``created_at`` is kept: tasks are listed in its order (file order)."""
        fields: dict[str, Any] = {
            "workflow": task.workflow,
            "key": task.key,
            "agent": task.agent,
            "status": task.status,
            "created_at": task.created_at,
        }
        if task.depends_on:
            fields["depends_on"] = task.depends_on
        if task.input:
            fields["input"] = task.input
        if task.max_attempts != 1:
            fields["max_attempts"] = task.max_attempts
        for name in ("output", "error", "progress", "thread", "started_at", "finished_at"):
            value = getattr(task, name)
            if value is not None:
                fields[name] = value
        if task.attempts:
            fields["attempts"] = task.attempts
        self._append("new_task", (task.workflow, task.key), fields, OP_BYTES)

    def new_workflow(self, workflow: Workflow) -> None:
        """Create a workflow row; append it after its tasks' ``new_task``: it is then stored after all of them."""
        fields = workflow.model_dump()
        fields.pop("id")
        self._append("new_workflow", workflow.id, fields, OP_BYTES * 4)

    def task(self, workflow: str, key: str, changes: dict[str, Any]) -> None:
        self._append("task", (workflow, key), changes, OP_BYTES)

    def workflow(self, workflow: str, changes: dict[str, Any]) -> None:
        self._append("workflow", workflow, changes, OP_BYTES)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        self._append("checkpoint", checkpoint, None, OP_BYTES * (1 + len(checkpoint.task_states)))

    def event(self, event: Event, size: int = OP_BYTES) -> None:
        self._append("event", event, None, size)

    def _append(self, kind: str, target: Any, payload: Any, size: int) -> None:
        self._ops.append((kind, target, payload, size))
        self._appended += 1
        self._backlog_bytes += size
        if self._backlog_bytes > self.limits.backlog_high or len(self._ops) > self.limits.backlog_ops:
            self._writable.clear()
        self._wake.set()

    def add_before_batch(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` before each batch is taken (it may append: the recorder seals open output chunks into
        events, a run seals the completions of the tick into a checkpoint); returns a remover."""
        self._before_batch.append(hook)
        return lambda: self._before_batch.remove(hook)

    def before_batch(self) -> None:
        for hook in list(self._before_batch):
            try:
                hook()
            except Exception:
                log.exception("a before-batch hook failed")

    def poke(self) -> None:
        """Wake the writer without appending (output waiting in an open chunk)."""
        self._wake.set()

    # ---- waiting -------------------------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """False while the backlog is over its high-water mark (until it is back down to the low one)."""
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    @property
    def backlog(self) -> int:
        """Ops appended but not yet stored."""
        return self._appended - self._committed

    def mark(self) -> int:
        """A position in the log: ``commit(upto=mark)`` waits for what was appended before it."""
        return self._appended

    async def commit(self, upto: int | None = None) -> None:
        """Wait until everything appended so far (or before ``upto``) is stored (at once if it is)."""
        mark = self._appended if upto is None else upto
        if self._committed >= mark or self._abandoned:
            return  # abandoned: nothing more will be stored, so nothing is worth waiting for (Engine.close would hang)
        if self._task is None:
            raise RuntimeError("the state writer is not running")
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((mark, future))
        self._wake.set()
        await asyncio.shield(future)

    # ---- the writer task -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="agentdeck-state-writer")

    def abandon(self) -> None:
        """Stop after the write under way: ``close`` then stores nothing more (what is left is logged)."""
        self._abandoned = True
        self._wake.set()

    async def close(self, drain_s: float = 10.0) -> None:
        """Store what is queued, then stop. Gives up once ``drain_s`` seconds pass without a batch stored (the
        database is gone), reporting what is lost in the log. The backlog is bounded (``WriterLimits``), so a
        database that answers drains it in a few seconds."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            while not self._task.done():
                stored = self.batches
                done, _ = await asyncio.wait({self._task}, timeout=drain_s)
                if not done and self.batches == stored:
                    raise TimeoutError
            self._task.result()
        except (TimeoutError, DatabaseUnavailable):
            log.error(
                "closing: %d changes (~%d KB) could not be stored (nothing stored for %.0fs) and are lost",
                self.backlog,
                self._backlog_bytes // 1024,
                drain_s,
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(DatabaseUnavailable("the state writer closed before this change was stored"))
        self._waiters.clear()

    async def _loop(self) -> None:
        ahead: _Taken | None = None  # the next batch, taken and encoded while the one before was written
        while True:
            if self._abandoned:
                if self._ops or ahead is not None:
                    log.warning(
                        "closing without storing %d changes (~%d KB): the workflows keep their last stored state",
                        self.backlog,
                        self._backlog_bytes // 1024,
                    )
                while self._waiters:  # they will not be stored: nobody waits for them
                    _, future = self._waiters.popleft()
                    if not future.done():
                        future.set_result(None)
                return
            if ahead is None:
                if not self._ops:
                    self.before_batch()  # open output chunks become events (ops)
                if not self._ops:
                    if self._stopping:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                ahead = self._take_prepared()
            current, ahead = ahead, None
            writing = asyncio.ensure_future(self._apply(current.batch, current.prepared))
            # While the engine executes this batch, take and encode the next: Python's share of a batch then
            # overlaps the database's instead of adding to it.
            await asyncio.sleep(0)
            if not writing.done():
                self.before_batch()
                if self._ops:
                    ahead = self._take_prepared()
            events = await writing
            self._committed += current.count
            self._backlog_bytes -= current.size
            self.batches += 1
            self.ops_written += current.count
            if (
                not self._writable.is_set()
                and self._backlog_bytes <= self.limits.backlog_low
                and len(self._ops) <= self.limits.backlog_ops // 2
            ):
                self._writable.set()
            try:
                self.on_committed(events)
            except Exception:
                log.exception("publishing a stored batch failed")
            while self._waiters and self._waiters[0][0] <= self._committed:
                _, future = self._waiters.popleft()
                if not future.done():
                    future.set_result(None)

    def _take_prepared(self) -> _Taken:
        self.before_batch()
        batch, count, size, _ = self._take()
        try:
            prepared = self._store.prepare(batch)
        except (TypeError, ValueError):  # cannot be encoded whole (a bug): _apply stores it item by item
            prepared = _UNPREPARED
        return _Taken(batch, count, size, prepared)

    def _take(self) -> tuple[StateBatch, int, int, list[Event]]:
        """The longest prefix of the log within the batch budget (at least one op), merged: a row created or
        changed several times in the prefix is written once, so only rows count against ``batch_rows``."""
        batch = StateBatch()
        count = size = rows = 0
        limits = self.limits
        ops = self._ops
        pages: set[str] = set()
        while ops:
            kind, target, payload, op_size = ops[0]
            if count and (
                size + op_size > limits.batch_bytes
                or count >= limits.batch_ops
                or (rows >= limits.batch_rows and self._adds_row(batch, pages, kind, target))
            ):
                break
            ops.popleft()
            count += 1
            size += op_size
            if self._adds_row(batch, pages, kind, target):
                rows += 1
            if kind == "event":
                batch.events.append(target)
                pages.add(target.workflow)
            elif kind == "task":
                created = batch.new_tasks.get(target)
                (created if created is not None else batch.tasks.setdefault(target, {})).update(payload)
            elif kind == "workflow":
                created = batch.new_workflows.get(target)
                (created if created is not None else batch.workflows.setdefault(target, {})).update(payload)
            elif kind == "new_task":
                batch.new_tasks[target] = dict(payload)
            elif kind == "new_workflow":
                batch.new_workflows[target] = dict(payload)
            else:
                batch.checkpoints.append(target)
        return batch, count, size, batch.events

    @staticmethod
    def _adds_row(batch: StateBatch, pages: set[str], kind: str, target: Any) -> bool:
        if kind == "event":
            return bool(target.workflow not in pages)
        if kind == "task":
            return target not in batch.new_tasks and target not in batch.tasks
        if kind == "workflow":
            return target not in batch.new_workflows and target not in batch.workflows
        return True

    async def _apply(self, batch: StateBatch, prepared: Any = None) -> list[Event]:
        """Store ``batch``, retrying while the database is unreachable; returns the events stored (only those are
        published). A batch the database refuses (or we cannot encode: a bug) is stored an item at a time, and an
        item refused on its own is logged and dropped — unless every item is refused: that is the database, not
        the items, so the whole batch waits and is tried again, as when the database is unreachable."""
        delay = _RETRY_FIRST_S
        while True:
            stored = await self._try_apply(batch, prepared)
            if stored is not None:
                if self._down:
                    self._down = False
                    log.warning("database reachable again; stored the changes kept meanwhile")
                return stored
            if self._stopping and delay >= _RETRY_MAX_S:
                raise DatabaseUnavailable("the database did not take the last changes before closing")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _try_apply(self, batch: StateBatch, prepared: Any = None) -> list[Event] | None:
        """One attempt: the events stored, or None when the batch must wait and be tried again."""
        try:
            if prepared is _UNPREPARED:
                raise ValueError("the batch could not be encoded")
            if prepared is not None:
                await self._store.apply_prepared(prepared)
            else:
                await self._store.apply(batch)
        except DatabaseUnavailable as exc:
            self._note_down(exc)
            return None
        except (QueryFailed, TypeError, ValueError):
            log.exception("a batch of %d changes was refused; storing them one at a time", size_of(batch))
            stored = await self._apply_singles(batch)
            if stored is None:
                self._note_down("every change of a batch was refused")
            return stored
        return batch.events

    def _note_down(self, why: object) -> None:
        if not self._down:
            self._down = True
            log.warning("database unreachable (%s); keeping changes in memory and retrying", why)

    async def _apply_singles(self, batch: StateBatch) -> list[Event] | None:
        """Each item of ``batch`` on its own; returns the events stored, or None when every one of several items
        was refused (then nothing was stored either, and the batch is tried again whole)."""
        stored: list[Event] = []
        refused: list[StateBatch] = []
        items = singles(batch)
        for single in items:
            try:
                await self._store.apply(single)
            except (QueryFailed, TypeError, ValueError):
                refused.append(single)
            else:
                stored.extend(single.events)
        if len(items) > 1 and len(refused) == len(items):
            return None
        for single in refused:
            log.error("dropped a change the database refuses: %s", describe(single))
        return stored


_UNPREPARED = object()


@dataclass
class _Taken:
    """A batch taken from the log: what it merged, how many ops and bytes it stands for, and its encoding."""

    batch: StateBatch
    count: int
    size: int
    prepared: Any
