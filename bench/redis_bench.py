"""Redis bus latency end to end (``publish_many`` → the subscriber's iterator), next to raw redis-py pub/sub.

Both run in this process against the same Redis (``AGENTDECK_BENCH_REDIS``, default ``redis://127.0.0.1:6379/0``),
each under a channel prefix of its own, at a steady 2,000 events/s. Events go out the way the engine publishes
them: in batches, one per group commit (``BATCH_EVERY_S``), each batch in seq order. The peer publishes the same
JSON payloads with a non-transactional pipeline of ``PUBLISH`` per batch (one round trip, the cheapest way
redis-py offers) and reads them with ``PubSub.get_message`` + ``json.loads``.

Latency of an event = the moment its batch was handed to the publisher → the moment the subscriber got it.
The two take turns in one-second slices (bus first, then peer first, ...), so a noisy neighbour on the machine
hits both alike; a repeat pools ``seconds`` of each. The figures are the median over ``REPEATS`` repeats (p50,
p99, max each), and the target is the bus's p99 at most twice the peer's. Missing events (dropped and not
refilled: the bench stores nothing) are counted, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bench._stats import summary_ms
from db.connection import redact_url
from db.models import Event, EventType
from engine.bus import RedisBus

REDIS_URL = os.environ.get("AGENTDECK_BENCH_REDIS", "redis://127.0.0.1:6379/0")
RATE_PER_S = 2_000
BATCH_EVERY_S = 0.005  # a group commit every 5 ms: 10 events a batch at 2,000 events/s
REPEATS = 3
TARGET_RATIO = 2.0
WORKFLOW = "bench-wf"

Publish = Callable[[Sequence[Event]], Awaitable[None]]


def _events(first: int, last: int) -> list[Event]:
    return [
        Event(
            seq=seq, type=EventType.TASK_OUTPUT, workflow=WORKFLOW, task="t", agent="a", data={"lines": [f"line {seq}"]}
        )
        for seq in range(first, last + 1)
    ]


async def _paced(publish: Publish, count: int, sent: dict[int, float]) -> None:
    """Publish seqs 1..count at ``RATE_PER_S``, a batch every ``BATCH_EVERY_S``, recording when each went out."""
    start = time.perf_counter()
    published = 0
    tick = 0
    while published < count:
        tick += 1
        due = min(count, int(tick * BATCH_EVERY_S * RATE_PER_S))
        delay = start + tick * BATCH_EVERY_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if due <= published:
            continue
        batch = _events(published + 1, due)
        now = time.perf_counter()
        for event in batch:
            sent[event.seq] = now
        await publish(batch)
        published = due


async def bus_trial(count: int) -> tuple[list[float], int]:
    """``RedisBus``: returns (latencies in seconds, events missing at the subscriber)."""
    prefix = f"agentdeck-bench-{uuid.uuid4().hex[:10]}"
    latencies: list[float] = []
    sent: dict[int, float] = {}
    async with RedisBus(REDIS_URL, prefix=prefix) as bus:
        try:
            async with bus.subscribe(WORKFLOW) as sub:

                async def listen() -> None:
                    async for event in sub:
                        latencies.append(time.perf_counter() - sent[event.seq])
                        if event.seq == count:
                            return

                listener = asyncio.create_task(listen())
                await _paced(bus.publish_many, count, sent)
                with contextlib.suppress(TimeoutError):  # missing events are counted below
                    await asyncio.wait_for(listener, 30)
        finally:
            await _delete_keys(prefix)
    return latencies, count - len(latencies)


async def raw_trial(count: int) -> tuple[list[float], int]:
    """The peer: redis-py pub/sub with nothing on top; returns (latencies in seconds, events missing)."""
    channel = f"agentdeck-bench-raw-{uuid.uuid4().hex[:10]}:events:{WORKFLOW}"
    latencies: list[float] = []
    sent: dict[int, float] = {}
    publisher = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    listener_client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    pubsub = listener_client.pubsub()
    try:
        await pubsub.subscribe(channel)
        confirmed = None
        while confirmed is None or confirmed["type"] != "subscribe":  # live before the first publish
            confirmed = await pubsub.get_message(timeout=5.0)

        async def listen() -> None:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                seq = json.loads(message["data"])["seq"]
                latencies.append(time.perf_counter() - sent[seq])
                if seq == count:
                    return

        async def publish(batch: Sequence[Event]) -> None:
            pipe = publisher.pipeline(transaction=False)
            for event in batch:
                pipe.publish(channel, json.dumps(event.to_json_dict(), separators=(",", ":")))
            await pipe.execute()

        listening = asyncio.create_task(listen())
        await _paced(publish, count, sent)
        with contextlib.suppress(TimeoutError):  # missing events are counted below
            await asyncio.wait_for(listening, 30)
    finally:
        await cast(Callable[[], Awaitable[None]], pubsub.aclose)()  # unannotated in redis-py
        await listener_client.aclose()
        await publisher.aclose()
    return latencies, count - len(latencies)


async def _delete_keys(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _reachable() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
        return None
    except (RedisConnectionError, OSError) as exc:
        return f"no Redis at {redact_url(REDIS_URL)}: {exc}"
    finally:
        await client.aclose()


def _median_of(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 3)


async def repeat(seconds: int) -> tuple[list[float], int, list[float], int]:
    """One repeat: ``seconds`` one-second slices of each, alternating which goes first."""
    bus: list[float] = []
    raw: list[float] = []
    missing_bus = missing_raw = 0
    per_slice = RATE_PER_S
    for turn in range(seconds):
        trials = [(bus_trial, bus), (raw_trial, raw)]
        for trial, into in trials if turn % 2 == 0 else reversed(trials):
            latencies, missing = await trial(per_slice)
            into.extend(latencies)
            if trial is bus_trial:
                missing_bus += missing
            else:
                missing_raw += missing
    return bus, missing_bus, raw, missing_raw


async def run(quick: bool, seconds: int | None = None) -> dict[str, Any]:
    """The ``redis_bus_latency`` section of ``agentdeck bench``: ``seconds`` of each per repeat (1 quick, 5 full)."""
    problem = await _reachable()
    if problem is not None:
        return {"redis_bus_latency": {"skipped": problem}}
    seconds = seconds if seconds is not None else (1 if quick else 5)
    await bus_trial(200)  # warm-up: connections, the Lua script cache, first-use costs
    await raw_trial(200)
    bus_runs: list[dict[str, float]] = []
    raw_runs: list[dict[str, float]] = []
    missing = {"bus": 0, "raw": 0}
    for _ in range(REPEATS):
        bus, missing_bus, raw, missing_raw = await repeat(seconds)
        bus_runs.append(summary_ms(bus))
        raw_runs.append(summary_ms(raw))
        missing["bus"] += missing_bus
        missing["raw"] += missing_raw
    bus_p99, raw_p99 = _median_of(bus_runs, "p99_ms"), _median_of(raw_runs, "p99_ms")
    ratio = round(bus_p99 / raw_p99, 2) if raw_p99 > 0 else None
    return {
        "redis_bus_latency": {
            "rate_per_s": RATE_PER_S,
            "seconds_each_per_repeat": seconds,
            "batch_every_ms": BATCH_EVERY_S * 1000,
            "repeats": REPEATS,
            "bus_p50_ms": _median_of(bus_runs, "p50_ms"),
            "bus_p99_ms": bus_p99,
            "bus_max_ms": _median_of(bus_runs, "max_ms"),
            "raw_p50_ms": _median_of(raw_runs, "p50_ms"),
            "raw_p99_ms": raw_p99,
            "raw_max_ms": _median_of(raw_runs, "max_ms"),
            "p99_ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "missing_bus": missing["bus"],
            "missing_raw": missing["raw"],
            "met": ratio is not None and ratio <= TARGET_RATIO and missing["bus"] == 0,
        }
    }


if __name__ == "__main__":
    from bench.runner import render

    print(render(asyncio.run(run(quick=False))))
