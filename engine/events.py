"""The event recorder: gives each workflow's events a gap-free ``seq``, publishes them, persists them in batches.

Publishing is immediate (subscribers see an event as soon as it happens); persistence is batched (one
``INSERT`` per batch) on a background task, flushed at least every ``flush_interval`` and on ``flush()`` /
``close()``. Task and workflow state are written to their own tables directly, so a crash can lose at most the
last few events, never a task's state; after a restart ``seq`` continues from the last stored event, so the
stored stream stays gap-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from db.models import Event
from db.stores import EventStore
from engine.bus import EventBus

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


def output_lines(event: Event) -> list[str]:
    """The lines a ``task.output`` event carries.

    Output is stored in chunks: ``data = {"stream": "stdout", "lines": [...]}`` holds consecutive lines of one
    stream. Events written before chunking carry one ``line``; both shapes are read here.
    """
    lines = event.data.get("lines")
    if isinstance(lines, list):
        return [str(line) for line in lines]
    line = event.data.get("line")
    return [] if line is None else [str(line)]


class EventRecorder:
    def __init__(self, store: EventStore, bus: EventBus, batch_size: int = 50, flush_interval: float = 0.05) -> None:
        self._store = store
        self._bus = bus
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._seq: dict[str, int] = {}
        self._buffer: list[Event] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Event] = asyncio.Queue()
        self._listeners: list[Listener] = []
        self._stopping = False

    @property
    def bus(self) -> EventBus:
        return self._bus

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flusher(), name="agentdeck-event-flusher")
            self._publisher_task = asyncio.create_task(self._publisher(), name="agentdeck-event-publisher")

    async def close(self) -> None:
        """Publish and persist everything emitted, then stop the background tasks."""
        if self._publisher_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), 10)
        # The flusher is asked to stop, not cancelled: cancelling it inside an INSERT could leave a batch stored
        # but still buffered, and the final flush would then write it twice.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher_task
        self._task = self._publisher_task = None
        await self.flush()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` synchronously for every event (``--json`` output uses this); returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def resume_sequence(self, workflow: str) -> None:
        """Continue ``seq`` after the last stored event of ``workflow`` (after a restart or crash)."""
        await self.flush()
        self._seq[workflow] = max(self._seq.get(workflow, 0), await self._store.last_seq(workflow))

    def last_seq(self, workflow: str) -> int:
        return self._seq.get(workflow, 0)

    def emit(
        self,
        workflow: str,
        type: str,
        *,
        task: str | None = None,
        agent: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Record an event now (seq assigned, listeners called); publishing and persisting follow in order.

        Synchronous on purpose: the engine and sandbox callbacks never wait on subscribers or the database.
        """
        seq = self._seq.get(workflow, 0) + 1
        self._seq[workflow] = seq
        event = Event(seq=seq, type=type, workflow=workflow, task=task, agent=agent, data=data or {})
        self._buffer.append(event)
        if not self._bus.publish_nowait(event):  # in-process: delivered now; Redis: in order, from a task
            self._outbox.put_nowait(event)
        for listener in list(self._listeners):
            listener(event)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()
        return event

    async def drain(self) -> None:
        """Wait until every event emitted so far was handed to the bus."""
        await self._outbox.join()

    async def flush(self) -> None:
        """Persist everything emitted so far."""
        async with self._flush_lock:
            while self._buffer:
                batch = self._buffer[: self._batch_size]
                await self._store.append_many(batch)
                del self._buffer[: len(batch)]

    async def _publisher(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await self._bus.publish(event)
            except Exception:  # the event is persisted regardless; subscribers refill it from the store
                log.exception("publishing event %s/%s failed", event.workflow, event.seq)
            finally:
                self._outbox.task_done()

    async def _flusher(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a failed flush is retried on the next beat; the events stay buffered
                log.exception("persisting events failed")
