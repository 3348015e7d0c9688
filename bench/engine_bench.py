"""Engine overhead per task and in-process event latency.

*Overhead*: a no-op DAG of N tasks (layers of fan-out/fan-in) run by the engine on ``mem://`` with full
persistence (task rows, events, checkpoints), next to bare asyncio running the same DAG with the same
dependency waits. Overhead per task = (engine - bare) / N. Target ≤ 2 ms.

*Event latency*: time from ``EventRecorder.emit`` to delivery to an in-process bus subscriber, with events
persisted to ``mem://`` as the engine does: at a steady 2,000 events/s (agent output at a brisk rate; target
p99 ≤ 5 ms), and — reported, with no target — for every event of the saturating DAG run above, where 64
tasks share the event loop with persistence and the subscriber.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench._stats import summary_ms
from db import connect
from db.models import Event, WorkflowStatus
from db.stores import Stores
from engine.engine import Engine
from engine.spec import WorkflowSpec

WIDTH = 50


async def noop(ctx: Any) -> None:
    """The task body: nothing, so what is measured is the engine around it."""
    return None


def dag_edges(n: int) -> dict[str, list[str]]:
    """Layers of ``WIDTH`` tasks; each task depends on two tasks of the previous layer."""
    edges: dict[str, list[str]] = {}
    for i in range(n):
        layer, pos = divmod(i, WIDTH)
        if layer == 0:
            edges[f"t{i}"] = []
        else:
            base = (layer - 1) * WIDTH
            edges[f"t{i}"] = sorted({f"t{base + pos}", f"t{base + (pos + 1) % WIDTH}"})
    return edges


def dag_spec(n: int) -> WorkflowSpec:
    edges = dag_edges(n)
    return WorkflowSpec.model_validate(
        {
            "name": f"bench-noop-{n}",
            "concurrency": 64,
            "agents": {"noop": {"kind": "python", "callable": "bench.engine_bench:noop"}},
            "tasks": [{"id": key, "agent": "noop", "depends_on": deps} for key, deps in edges.items()],
        }
    )


async def bare_asyncio(n: int) -> float:
    """The peer: the same DAG with asyncio tasks and events, nothing persisted."""
    edges = dag_edges(n)
    done = {key: asyncio.Event() for key in edges}
    limit = asyncio.Semaphore(64)

    async def one(key: str) -> None:
        for dep in edges[key]:
            await done[dep].wait()
        async with limit:
            await noop(None)
        done[key].set()

    start = time.perf_counter()
    await asyncio.gather(*(one(key) for key in edges))
    return time.perf_counter() - start


async def engine_run(n: int) -> tuple[float, list[float], bool]:
    """Run the DAG in the engine; returns (seconds, event latencies in seconds, completed)."""
    latencies: list[float] = []
    async with connect("mem://") as db, Engine(db) as engine:
        subscription = engine.bus.subscribe()

        async def listen() -> None:
            async for event in subscription:
                latencies.append(time.time() - event.ts.timestamp())
                if event.type.startswith("workflow.") and event.type != "workflow.created" and _final(event):
                    return

        listener = asyncio.create_task(listen())
        start = time.perf_counter()
        workflow_id = await engine.submit(dag_spec(n))
        status = await engine.wait(workflow_id)
        elapsed = time.perf_counter() - start
        await asyncio.wait_for(listener, 30)
        await subscription.close()
    return elapsed, latencies, status is WorkflowStatus.COMPLETED


def _final(event: Event) -> bool:
    return event.type in ("workflow.completed", "workflow.failed", "workflow.cancelled")


async def steady_latency(count: int, rate_per_s: float) -> list[float]:
    """Emit ``count`` events at ``rate_per_s`` through the real recorder (persisting) and time their delivery."""
    from engine.bus import InProcessBus
    from engine.events import EventRecorder
    from engine.writer import StateWriter

    latencies: list[float] = []
    async with connect("mem://") as db:
        stores = Stores.over(db)
        bus = InProcessBus(stores.events)
        recorder = EventRecorder(StateWriter(stores.state), bus, stores.events)
        await recorder.start()
        subscription = bus.subscribe()
        await subscription.wait_ready()
        received = asyncio.Event()

        async def listen() -> None:
            async for event in subscription:
                latencies.append(time.perf_counter() - sent[event.seq])
                if event.seq == count:
                    received.set()
                    return

        sent: dict[int, float] = {}
        listener = asyncio.create_task(listen())
        interval = 1.0 / rate_per_s
        start = time.perf_counter()
        for seq in range(1, count + 1):
            delay = start + seq * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[seq] = time.perf_counter()
            recorder.emit("bench-wf", "task.progress", task="t", agent="a", data={"message": f"line {seq}"})
        await asyncio.wait_for(received.wait(), 30)
        await listener
        await subscription.close()
        await recorder.close()
        await bus.close()
    return latencies


async def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 1000
    await engine_run(50)  # warm-up: imports, JIT-less caches, SurrealDB first-use costs
    bare = min([await bare_asyncio(n) for _ in range(3)])
    engine_s, latencies, completed = await engine_run(n)
    per_task_ms = (engine_s - bare) / n * 1000
    steady = summary_ms(await steady_latency(2_000 if quick else 10_000, 2_000.0))
    return {
        "engine_overhead": {
            "tasks": n,
            "engine_s": round(engine_s, 3),
            "bare_asyncio_s": round(bare, 4),
            "ratio": round(engine_s / bare, 1) if bare > 0 else None,
            "overhead_per_task_ms": round(per_task_ms, 3),
            "target_ms": 2.0,
            "met": completed and per_task_ms <= 2.0,
            "completed": completed,
        },
        "event_latency_inprocess": {**steady, "rate_per_s": 2000, "target_p99_ms": 5.0, "met": steady["p99_ms"] <= 5.0},
        "event_latency_under_dag_load": {**summary_ms(latencies), "concurrency": 64},
    }
