"""Change watch: commit → seen latency of ``db/watch.py``'s embedded watcher, woken by our commits vs polling.

The watcher under test is ``ChangefeedWatcher`` as ``watcher_for`` builds it on an embedded database: this
process's own commits wake it (``Database.commits``), with a one-second safety poll. The peer, in the same run, is
the same watcher with ``wake_on_commit=False``: the adaptive poll it replaced (5 ms while changes flow, backing off
to 50 ms when idle). Both read the feed the same way, so the difference is only what wakes them.

- **Latency**: a writer inserts one ``event`` row per write; latency runs from the write being acknowledged (its
  ``Database.query`` returning) to the watcher's consumer receiving the change (a poll that read the commit before
  the writer resumed counts as 0). ``frequent``: 500 writes/s for a few seconds; ``sparse``: one write after each
  quiet spell of 200-500 ms (~50 samples). p50/p99/max per run; each figure is the median over the repeats, the two
  modes taking turns (which goes first alternates). ``reads_per_s`` is the watcher's feed reads per second.
- **Idle**: three watchers (the dashboard tree's workflow, task and graph_node streams) with nothing written for a
  few seconds: feed reads per second, and process CPU (ms per wall second, SurrealDB's threads included) next to
  the same wait with no watcher at all.

- **Tree feed** (``bench/tree_feed_bench.py``): the dashboard tree's merged, commit-ordered stream next to the
  three independent streams it replaced.

On ``mem://`` and a temporary ``surrealkv://`` store. Nothing here is asserted by the tests (they check the harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from bench._stats import percentile
from bench.tree_feed_bench import tree_feed
from db import Database, connect
from db.models import Event
from db.stores._codec import to_row
from db.watch import ChangefeedWatcher, position_at_ms

MODES = ("commit", "poll")
FREQUENT_PER_S = 500
IDLE_TABLES = ("workflow", "task", "graph_node")


class ReadCounter:
    """Counts the change-feed reads a database serves (wraps its ``query``)."""

    def __init__(self, db: Database) -> None:
        self.reads = 0
        original: Callable[..., Awaitable[list[Any]]] = db.query

        async def counted(sql: str, vars: Mapping[str, Any] | None = None) -> list[Any]:
            if sql.startswith("SHOW CHANGES"):
                self.reads += 1
            return await original(sql, vars)

        setattr(db, "query", counted)  # noqa: B010 - an instance attribute, so only this bench's db is counted


def watcher(db: Database, mode: str) -> ChangefeedWatcher:
    return ChangefeedWatcher(db, wake_on_commit=mode == "commit")


async def latency_run(
    db: Database, counter: ReadCounter, mode: str, pauses_s: list[float], first: int
) -> dict[str, float]:
    """Write one row after each pause, with ``mode``'s watcher following; latencies and reads per second."""
    acknowledged: dict[int, float] = {}
    seen: dict[int, float] = {}
    everything = asyncio.Event()
    last = first + len(pauses_s) - 1

    async def follow() -> None:
        since = position_at_ms(int(time.time() * 1000))  # only this run's writes, none before it
        async for change in watcher(db, mode).watch("event", since):
            n = int(change.record.seq)
            if first <= n <= last:
                seen.setdefault(n, time.perf_counter())
                if len(seen) == len(pauses_s):
                    everything.set()

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # a quiet lead-in: the first write also follows a quiet spell, as in use
    reads_before, started = counter.reads, time.perf_counter()
    due = time.perf_counter()
    for n, pause in enumerate(pauses_s, start=first):
        due += pause
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        row = Event(seq=n, type="bench.write", workflow="watch-bench", data={})
        await db.query("INSERT INTO event $rows RETURN NONE", {"rows": [to_row(row, "event", row.id)]})
        acknowledged[n] = time.perf_counter()
    writing_s = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everything.wait(), 10)
    reads = counter.reads - reads_before
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    latencies = [max(0.0, seen[n] - at) for n, at in acknowledged.items() if n in seen]
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "writes_per_s": len(acknowledged) / writing_s,
        "reads_per_s": reads / writing_s,
        "lost": len(acknowledged) - len(latencies),
    }


async def latencies(url: str, quick: bool, repeats: int) -> dict[str, Any]:
    rng = random.Random(9)
    patterns: dict[str, Callable[[], list[float]]] = {
        "frequent": lambda: [1 / FREQUENT_PER_S] * (FREQUENT_PER_S * (1 if quick else 3)),
        "sparse": lambda: [rng.uniform(0.2, 0.5) for _ in range(10 if quick else 50)],
    }
    figures: dict[str, Any] = {"repeats": repeats}
    first = 0
    async with connect(url) as db:
        counter = ReadCounter(db)
        for pattern, pauses in patterns.items():
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for repeat in range(repeats):
                for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                    plan = pauses()
                    runs[mode].append(await latency_run(db, counter, mode, plan, first))
                    first += len(plan)
            for mode in MODES:
                for key in ("p50_ms", "p99_ms", "max_ms", "writes_per_s", "reads_per_s"):
                    figures[f"{pattern}_{mode}_{key}"] = round(statistics.median(r[key] for r in runs[mode]), 3)
                figures[f"{pattern}_{mode}_lost"] = sum(int(r["lost"]) for r in runs[mode])
            for stat in ("p50", "p99"):
                ours = figures[f"{pattern}_commit_{stat}_ms"]
                peer = figures[f"{pattern}_poll_{stat}_ms"]
                figures[f"{pattern}_poll_over_commit_{stat}"] = round(peer / ours, 1) if ours else None
            figures[f"{pattern}_samples_per_run"] = len(pauses())
    return figures


async def idle_run(db: Database, counter: ReadCounter, mode: str | None, seconds: float) -> dict[str, float]:
    """``len(IDLE_TABLES)`` watchers (none for ``mode=None``) waiting while nothing is written."""
    streams = [watcher(db, mode).watch(table) for table in IDLE_TABLES] if mode else []

    async def drain(stream: Any) -> None:
        async for _ in stream:
            pass

    readers = [asyncio.create_task(drain(stream)) for stream in streams]
    await asyncio.sleep(0.5)  # past the start-up reads and the poll's back-off to its idle beat
    reads, cpu, wall = counter.reads, time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - wall
    figures = {"reads_per_s": (counter.reads - reads) / wall, "cpu_ms_per_s": (time.process_time() - cpu) / wall * 1e3}
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return figures


async def idle(url: str, quick: bool, repeats: int) -> dict[str, Any]:
    seconds = 1.0 if quick else 3.0
    figures: dict[str, Any] = {"repeats": repeats, "seconds": seconds, "watchers": len(IDLE_TABLES)}
    async with connect(url) as db:
        counter = ReadCounter(db)
        runs: dict[str, list[dict[str, float]]] = {"none": [], "commit": [], "poll": []}
        for repeat in range(repeats):
            order = ["none", "commit", "poll"]
            for mode in order if repeat % 2 == 0 else order[::-1]:
                runs[mode].append(await idle_run(db, counter, None if mode == "none" else mode, seconds))
        for mode, values in runs.items():
            for key in ("reads_per_s", "cpu_ms_per_s"):
                figures[f"{mode}_{key}"] = round(statistics.median(r[key] for r in values), 2)
    return figures


async def run(quick: bool, repeats: int = 3) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {"watch_latency_mem": await latencies("mem://", quick, repeats)}
    results["watch_tree_feed_mem"] = await tree_feed("mem://", quick, repeats)
    with tempfile.TemporaryDirectory(prefix="agentdeck-watch-bench-") as tmp:
        url = f"surrealkv://{Path(tmp) / 'state.db'}"
        results["watch_latency_surrealkv"] = await latencies(url, quick, repeats)
        results["watch_idle_surrealkv"] = await idle(url, quick, repeats)
    with tempfile.TemporaryDirectory(prefix="agentdeck-watch-bench-") as tmp:
        results["watch_tree_feed_surrealkv"] = await tree_feed(f"surrealkv://{Path(tmp) / 'state.db'}", quick, repeats)
    results["watch_idle_mem"] = await idle("mem://", quick, repeats)
    return results
