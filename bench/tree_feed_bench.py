"""The dashboard tree's feed: commit → seen latency of one merged, commit-ordered stream over ``workflow``,
``task`` and ``graph_node`` (``ChangeWatcher.watch_many``, what the tree follows) next to the three independent
streams the tree followed before (``watch`` per table, reordered in the widget). A writer updates one task row per
write at ~200 writes/s; latency runs from the write being acknowledged to the follower receiving it. The merged
stream holds a change back while an earlier commit may still land (writes in flight), which is what it may cost.
Each figure is the median over the repeats, the two taking turns. Part of the ``watch`` section.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

from bench._stats import percentile
from db import Database, connect
from db.models import Task, Workflow, task_record_key
from db.stores import Stores
from db.stores._codec import rid
from db.watch import Change, ChangefeedWatcher, position_at_ms

TABLES = ("workflow", "task", "graph_node")
WRITES_PER_S = 200


async def _run(db: Database, merged: bool, writes: int, workflow: str) -> list[float]:
    acknowledged: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = asyncio.Event()
    since = position_at_ms(int(time.time() * 1000))
    watcher = ChangefeedWatcher(db)

    def take(change: Change) -> None:
        if change.table == "task" and change.record is not None:
            n = int(change.record.attempts)
            if n in acknowledged:
                seen.setdefault(n, time.perf_counter())
                if len(seen) == writes:
                    done.set()

    async def follow(stream: Any) -> None:
        async for change in stream:
            take(change)

    streams = [watcher.watch_many(TABLES, since)] if merged else [watcher.watch(t, since) for t in TABLES]
    readers = [asyncio.create_task(follow(s)) for s in streams]
    await asyncio.sleep(0.3)
    record = rid("task", task_record_key(workflow, "t"))
    due = time.perf_counter()
    for n in range(1, writes + 1):
        due += 1 / WRITES_PER_S
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        acknowledged[n] = -1.0
        await db.query("UPDATE $id SET attempts = $n RETURN NONE", {"id": record, "n": n})
        acknowledged[n] = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 10)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return [max(0.0, seen[n] - at) for n, at in acknowledged.items() if n in seen]


async def tree_feed(url: str, quick: bool, repeats: int) -> dict[str, Any]:
    writes = WRITES_PER_S * (1 if quick else 2)
    figures: dict[str, Any] = {"repeats": repeats, "writes_per_run": writes}
    runs: dict[str, list[list[float]]] = {"merged": [], "separate": []}
    async with connect(url) as db:
        stores = Stores.over(db)
        workflow = await stores.workflows.create(Workflow(name="tree-feed-bench"))
        await stores.tasks.put_many([Task(workflow=workflow.id, key="t", agent="a")])
        for repeat in range(repeats):
            for name in ("merged", "separate") if repeat % 2 == 0 else ("separate", "merged"):
                runs[name].append(await _run(db, name == "merged", writes, workflow.id))
    for name, samples in runs.items():
        figures[f"{name}_p50_ms"] = round(statistics.median(percentile(s, 50) * 1000 for s in samples), 3)
        figures[f"{name}_p99_ms"] = round(statistics.median(percentile(s, 99) * 1000 for s in samples), 3)
        figures[f"{name}_lost"] = sum(writes - len(s) for s in samples)
    return figures
