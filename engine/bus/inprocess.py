"""The embedded default: asyncio fan-out inside the engine's process, one bounded queue per subscriber.

``publish`` hands each subscriber the event with a non-blocking put and returns: a subscriber whose queue is full
loses the event (its inbox notes the drop in order) and refills it from the ``EventStore`` when it catches up.
The engine never waits for a dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence

from db.models import Event
from db.stores import EventStore
from engine.bus._inbox import SyncKind, SyncPoint
from engine.bus.base import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REFILL_TIMEOUT_S,
    EventBus,
    Flush,
    NoticeCallback,
    Subscription,
)


class InProcessBus(EventBus):
    """Fan-out to subscribers in this process.

    Args:
        store: where subscribers refill missed events and replay history from (None: gaps stay gaps).
        flush: the engine's "persist buffered events now", called before a refill reads the store.
        queue_size: events a subscriber may fall behind before it starts dropping (and later refilling).
        refill_timeout: how long a refill waits for missing events to reach the store before giving up.
    """

    def __init__(
        self,
        store: EventStore | None = None,
        flush: Flush | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        refill_timeout: float = DEFAULT_REFILL_TIMEOUT_S,
    ) -> None:
        super().__init__(store, flush, queue_size, refill_timeout)
        self._by_workflow: dict[str, set[_InProcessSubscription]] = {}
        self._everything: set[_InProcessSubscription] = set()
        self._marks: dict[str, int] = {}  # the highest seq published per workflow
        self._closed = False

    async def publish(self, event: Event) -> None:
        self._deliver(event)

    def publish_nowait(self, event: Event) -> bool:
        self._deliver(event)
        return True

    async def publish_many(self, events: Sequence[Event]) -> None:
        for event in events:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("publish on a closed event bus")
        if event.seq > self._marks.get(event.workflow, 0):
            self._marks[event.workflow] = event.seq
        for sub in self._by_workflow.get(event.workflow, ()):
            sub._inbox.offer(event)
        for sub in self._everything:
            sub._inbox.offer(event)

    def subscribe(
        self, workflow: str | None = None, *, after_seq: int | None = None, on_notice: NoticeCallback | None = None
    ) -> Subscription:
        if self._closed:
            raise RuntimeError("subscribe on a closed event bus")
        sub = _InProcessSubscription(self, workflow, after_seq, on_notice)
        if workflow is None:
            marks = dict(self._marks)
            self._everything.add(sub)
        else:
            marks = {workflow: self._marks[workflow]} if workflow in self._marks else {}
            self._by_workflow.setdefault(workflow, set()).add(sub)
        # Publishing is synchronous here, so these marks are exactly what was published before this subscriber.
        sub._inbox.sync(SyncPoint(SyncKind.START, marks))
        return sub

    def _remove(self, sub: _InProcessSubscription) -> None:
        if sub.workflow is None:
            self._everything.discard(sub)
            return
        subs = self._by_workflow.get(sub.workflow)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_workflow[sub.workflow]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in [*self._everything, *(s for subs in self._by_workflow.values() for s in subs)]:
            await sub.close()


class _InProcessSubscription(Subscription):
    def __init__(
        self, bus: InProcessBus, workflow: str | None, after_seq: int | None, on_notice: NoticeCallback | None
    ) -> None:
        super().__init__(
            workflow,
            after_seq,
            store=bus.store,
            flush=bus.flush,
            queue_size=bus.queue_size,
            refill_timeout=bus.refill_timeout,
            on_notice=on_notice,
        )
        self._bus = bus

    async def _stop_transport(self) -> None:
        self._bus._remove(self)
