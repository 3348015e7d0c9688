"""Event buses: live fan-out of workflow events, with gaps refilled from the ``EventStore`` by ``seq``.

One interface (``EventBus`` / ``Subscription``), two transports: ``InProcessBus`` (the embedded default) and
``RedisBus`` (other processes watch the same workflows). ``make_bus`` picks one from the configuration.
``tests/integration/test_bus.py`` is the conformance suite both pass.

    async with make_bus(settings.redis, stores.events, flush=recorder.flush) as bus:
        async with bus.subscribe(workflow_id, after_seq=0, on_notice=show) as events:
            async for event in events:
                ...
"""

from __future__ import annotations

from db.stores import EventStore
from engine.bus.base import (
    BusUnavailable,
    EventBus,
    Flush,
    GapNotice,
    NoticeCallback,
    Subscription,
)
from engine.bus.inprocess import InProcessBus
from engine.bus.redis_bus import RedisBus, RedisSubscription
from engine.bus.redis_url import BadRedisUrl


def make_bus(redis_url: str | None, store: EventStore | None, flush: Flush | None = None) -> EventBus:
    """A ``RedisBus`` when a Redis URL is configured, otherwise an ``InProcessBus``.

    Nothing connects here: ``await bus.ping()`` (or ``async with``) raises ``BusUnavailable`` if Redis is down.
    """
    if redis_url:
        return RedisBus(redis_url, store, flush)
    return InProcessBus(store, flush)


__all__ = [
    "BadRedisUrl",
    "BusUnavailable",
    "EventBus",
    "Flush",
    "GapNotice",
    "InProcessBus",
    "NoticeCallback",
    "RedisBus",
    "RedisSubscription",
    "Subscription",
    "make_bus",
]
