"""The event bus interface. The subscription logic every transport shares lives in ``engine.bus.subscription``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from db.models import Event
from db.stores import EventStore
from engine.bus.subscription import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REFILL_TIMEOUT_S,
    BusUnavailable,
    Flush,
    GapNotice,
    NoticeCallback,
    Subscription,
)

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_REFILL_TIMEOUT_S",
    "BusUnavailable",
    "EventBus",
    "Flush",
    "GapNotice",
    "NoticeCallback",
    "Subscription",
]


class EventBus(ABC):
    """Fans events out to subscribers, live; subscribers refill what they miss from the ``EventStore``.

    Use as ``async with make_bus(...) as bus`` (checks the transport is reachable, closes it after), or call
    ``ping()`` and ``close()`` yourself.
    """

    def __init__(
        self,
        store: EventStore | None,
        flush: Flush | None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        refill_timeout: float = DEFAULT_REFILL_TIMEOUT_S,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.store = store
        self.flush = flush
        self.queue_size = queue_size
        self.refill_timeout = refill_timeout

    async def publish(self, event: Event) -> None:
        """Send one event to every subscriber; never waits for a slow subscriber."""
        await self.publish_many([event])

    def publish_nowait(self, event: Event) -> bool:
        """Publish without awaiting, when the transport can (in-process); returns whether it did.

        The event recorder uses this to hand events to in-process subscribers in the same call that records
        them, and falls back to ``publish`` on a background task for transports that need I/O.
        """
        return False

    @abstractmethod
    async def publish_many(self, events: Sequence[Event]) -> None:
        """Send events, in order; never waits for a slow subscriber."""
        raise NotImplementedError

    @abstractmethod
    def subscribe(
        self, workflow: str | None = None, *, after_seq: int | None = None, on_notice: NoticeCallback | None = None
    ) -> Subscription:
        """Follow one workflow's events (or every workflow's, with ``workflow=None``).

        Args:
            workflow: the workflow to follow; None follows all of them.
            after_seq: only with a workflow: first replay the stored events with ``seq > after_seq``, then the
                live ones, with no gap and no duplicate. None: live events only, from now on.
            on_notice: called with a ``GapNotice`` whenever events missed live are refilled (or lost).

        Raises:
            ValueError: ``after_seq`` without a workflow, or without an ``EventStore``.
        """
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise ``BusUnavailable`` if the transport cannot be reached (nothing to reach by default)."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Close every subscription and release the transport. Idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
