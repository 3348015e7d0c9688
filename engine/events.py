"""The event recorder: gives each workflow's events a gap-free ``seq``, stores them through the state writer, and
publishes them once they are stored.

``emit`` is synchronous: the engine and sandbox callbacks never wait on subscribers or the database. The event
goes into the state writer's log with the task and workflow changes around it, and is published (in-process bus,
Redis, ``--json`` listeners) only after the transaction holding it committed — so an event anyone saw is never
lost in a crash, and a ``seq`` once published names one event forever.

Output is chunked: the lines a task prints between two ticks of the writer (or until another of its events, a
change of stream, or a size cap) become one ``task.output`` event ``{"stream": ..., "lines": [...]}``. Output is
also where backpressure starts: ``output_backlog`` tells a producer to stop reading a task's pipe while that
task's (or everyone's) unstored output is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from db.models import Event, EventType, new_event_id, utcnow
from db.stores import EventStore
from engine.bus import EventBus
from engine.writer import OP_BYTES, StateWriter

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]

#: What one output line costs in memory beyond its characters (the str object and its list slot).
LINE_OVERHEAD = 64

#: An output chunk is sealed into an event at this many lines or estimated bytes.
CHUNK_LINES = 1000
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class OutputLimits:
    """Unstored output allowed before its producer is held back (estimated bytes, lines included).

    A task is held once its own backlog passes ``task_high`` or everyone's passes ``total_high``, and released
    when both are back under their ``low`` marks.
    """

    task_high: int = 512 * 1024
    task_low: int = 128 * 1024
    total_high: int = 16 * 1024 * 1024
    total_low: int = 8 * 1024 * 1024


def output_lines(event: Event) -> list[str]:
    """The lines a ``task.output`` event carries (``Event.output_lines``, as a function to map over events)."""
    return event.output_lines


def _lines_size(lines: Sequence[str]) -> int:
    return sum(map(len, lines)) + LINE_OVERHEAD * len(lines)


@dataclass
class _Chunk:
    agent: str | None
    stream: str
    lines: list[str] = field(default_factory=list)
    size: int = 0


class EventRecorder:
    """Events of every workflow this engine writes.

    Args:
        writer: the engine's state writer (events are stored with the state changes around them).
        bus: where stored events are published.
        store: the event table (for ``resume_sequence``).
        limits: output backlog marks.
    """

    def __init__(
        self, writer: StateWriter, bus: EventBus, store: EventStore, limits: OutputLimits | None = None
    ) -> None:
        self._writer = writer
        self._bus = bus
        self._store = store
        self.limits = limits or OutputLimits()
        self._seq: dict[str, int] = {}
        self._listeners: list[Listener] = []
        self._open: dict[tuple[str, str], _Chunk] = {}
        self._backlog: dict[tuple[str, str], int] = {}
        self._total_backlog = 0
        self._held: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._outbox: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._publisher_task: asyncio.Task[None] | None = None
        writer.on_committed = self._committed
        writer.add_before_batch(self.seal_all)

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def writer(self) -> StateWriter:
        return self._writer

    async def start(self) -> None:
        await self._writer.start()
        if self._publisher_task is None:
            self._publisher_task = asyncio.create_task(self._publisher(), name="agentdeck-event-publisher")

    async def close(self) -> None:
        """Store and publish everything emitted, then stop."""
        self.seal_all()
        await self._writer.close()
        if self._publisher_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), 10)
            self._publisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher_task
            self._publisher_task = None
        for future in self._held.values():
            if not future.done():
                future.set_result(None)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event once it is stored, in order (``--json`` output uses this)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def resume_sequence(self, workflow: str) -> None:
        """Continue ``seq`` after the last stored event of ``workflow`` (after a restart or crash)."""
        await self.flush()
        self._seq[workflow] = max(self._seq.get(workflow, 0), await self._store.last_seq(workflow))

    def last_seq(self, workflow: str) -> int:
        return self._seq.get(workflow, 0)

    # ---- recording -------------------------------------------------------------------------------------------

    def emit(
        self,
        workflow: str,
        type: str,
        *,
        task: str | None = None,
        agent: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Record an event now (seq assigned); it is stored with the next batch and published after that.

        Output a task printed before this event is sealed first, so it keeps its place in the sequence.
        """
        if self._open:
            if task is not None:
                if (workflow, task) in self._open:
                    self._seal((workflow, task))
            else:
                for key in [key for key in self._open if key[0] == workflow]:
                    self._seal(key)
        return self._record(workflow, type, task, agent, data or {}, OP_BYTES)

    def _record(
        self, workflow: str, type: str, task: str | None, agent: str | None, data: dict[str, Any], size: int
    ) -> Event:
        seq = self._seq.get(workflow, 0) + 1
        self._seq[workflow] = seq
        # The validating constructor: measured, pydantic's model_construct costs twice as much here.
        event = Event(
            id=new_event_id(), ts=utcnow(), seq=seq, type=type, workflow=workflow, task=task, agent=agent, data=data
        )
        self._writer.event(event, size)
        return event

    def output(self, workflow: str, task: str, agent: str | None, stream: str, lines: list[str]) -> None:
        """Lines a task printed; they join the task's open chunk. A line holds no newline (``log`` splits)."""
        key = (workflow, task)
        chunk = self._open.get(key)
        if chunk is not None and (
            chunk.stream != stream or len(chunk.lines) >= CHUNK_LINES or chunk.size >= CHUNK_BYTES
        ):
            self._seal(key)
            chunk = None
        if chunk is None:
            chunk = self._open[key] = _Chunk(agent, stream)
            self._writer.poke()
        size = _lines_size(lines)
        chunk.lines.extend(lines)
        chunk.size += size
        self._backlog[key] = self._backlog.get(key, 0) + size
        self._total_backlog += size

    def _seal(self, key: tuple[str, str]) -> None:
        chunk = self._open.pop(key)
        data = {"stream": chunk.stream, "lines": chunk.lines}
        self._record(key[0], EventType.TASK_OUTPUT, key[1], chunk.agent, data, chunk.size)

    def seal_all(self) -> None:
        """Turn every open output chunk into an event (the writer calls this before taking a batch)."""
        for key in list(self._open):
            self._seal(key)

    def backlogged(self, workflow: str, task: str) -> bool:
        """Whether the task's (or everyone's) unstored output is over its high-water mark, or the writer is behind.
        Plain reads: safe to call from a worker thread."""
        key = (workflow, task)
        limits = self.limits
        return (
            self._backlog.get(key, 0) > limits.task_high
            or self._total_backlog > limits.total_high
            or key in self._held
            or not self._writer.writable
        )

    def output_backlog(self, workflow: str, task: str) -> Awaitable[None] | None:
        """None while the task may print on; else something to await until its output has been stored."""
        if not self.backlogged(workflow, task):
            return None
        if not self._writer.writable and not self._over_output_marks(workflow, task):
            return self._writer.wait_writable()
        key = (workflow, task)
        held = self._held.get(key)
        if held is None or held.done():
            held = self._held[key] = asyncio.get_running_loop().create_future()
        return asyncio.shield(held)

    def _over_output_marks(self, workflow: str, task: str) -> bool:
        limits = self.limits
        return (
            self._backlog.get((workflow, task), 0) > limits.task_high
            or self._total_backlog > limits.total_high
            or (workflow, task) in self._held
        )

    @property
    def output_backlog_bytes(self) -> int:
        """Estimated bytes of output printed but not stored yet, for every task."""
        return self._total_backlog

    def _release(self) -> None:
        limits = self.limits
        if self._total_backlog > limits.total_low:
            return
        for key, future in list(self._held.items()):
            if self._backlog.get(key, 0) <= limits.task_low:
                del self._held[key]
                if not future.done():
                    future.set_result(None)

    # ---- after the store -------------------------------------------------------------------------------------

    def _committed(self, events: list[Event]) -> None:
        """The writer stored ``events``: account their output, publish them, tell the listeners."""
        remote: list[Event] = []
        output = EventType.TASK_OUTPUT  # read once: reading an enum member costs ~0.2 µs on Python 3.11
        for event in events:
            if event.type == output and event.task is not None:
                lines = event.data.get("lines")
                if isinstance(lines, list):
                    key = (event.workflow, event.task)
                    size = _lines_size(lines)
                    left = self._backlog.get(key, 0) - size
                    if left > 0:
                        self._backlog[key] = left
                    else:
                        self._backlog.pop(key, None)
                    self._total_backlog -= size
            try:
                if not self._bus.publish_nowait(event):  # in-process: delivered now; Redis: batched, from a task
                    remote.append(event)
            except RuntimeError:  # the bus closed before the engine: the event is stored, subscribers are gone
                pass
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("an event listener failed on %s/%s", event.workflow, event.seq)
        if remote:
            self._outbox.put_nowait(remote)
        if self._held:
            self._release()

    async def flush(self) -> None:
        """Wait until everything emitted so far is stored (and, in process, published)."""
        self.seal_all()
        await self._writer.commit()

    async def drain(self) -> None:
        """Wait until every stored event was handed to the bus."""
        await self._outbox.join()

    async def _publisher(self) -> None:
        while True:
            events = await self._outbox.get()
            try:
                await self._bus.publish_many(events)
            except Exception:  # stored regardless; subscribers refill them from the store
                log.debug("publishing %d events failed", len(events), exc_info=True)
            finally:
                self._outbox.task_done()
