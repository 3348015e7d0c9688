"""The engine under load: an output flood, and a thousand agents at once.

*Output flood* (``output_flood``): 200 shell tasks each printing 10,000 lines (``--quick``: 40 tasks), all at
once, on ``surrealkv://`` (the default store, a temporary directory). Reported: lines stored (every one must be),
the engine process's peak RSS above its RSS before the run (sampled every 50 ms; target: the process stays at or
under 300 MB), and how long after its last task finished the workflow ended (target: within 5 s).

*Concurrent agents* (``concurrent_agents``): 1,000 python agents at once (``--quick``: 200), each logging 10
lines and reporting progress 200 ms apart (an agent thinking aloud: 10,000 events a second in all), on
``surrealkv://``. Reported: peak RSS, events per
second, and event latency from emit to an in-process subscriber (p50/p99: events are published once stored, so
this is also how far the store lags).

Each section runs in a fresh interpreter, so the RSS reported is what an engine doing that work holds, not what
the sections measured before it left in a shared process (~100 MB more).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench._stats import summary_ms
from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.events import output_lines
from engine.spec import WorkflowSpec

RSS_TARGET_MB = 300.0
END_LAG_TARGET_S = 5.0


async def chatty(ctx: Any) -> dict[str, int]:
    """A python agent that talks: 10 lines and progress reports, 200 ms apart, honouring pause and backlog."""
    for step in range(10):
        ctx.log(f"{ctx.task.id}: step {step} of 10, thinking about it")
        ctx.progress((step + 1) / 10)
        await ctx.step()
        await asyncio.sleep(0.2)
    return {"steps": 10}


class _RssSampler:
    """Peak resident memory of this process while running (a sample every 50 ms)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.before_mb = self._process.memory_info().rss / 1_048_576
        self.peak_mb = self.before_mb
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 1_048_576)
            await asyncio.sleep(0.05)

    def __enter__(self) -> _RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def output_flood(tasks: int, lines: int) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(
        {
            "name": "bench-flood",
            "concurrency": tasks,
            "agents": {"sh": {"kind": "shell"}},
            "tasks": [
                {"id": f"f{i}", "agent": "sh", "run": f"seq -f 'task {i} printed line %g of a flood' 1 {lines}"}
                for i in range(tasks)
            ],
        }
    )
    with tempfile.TemporaryDirectory(prefix="agentdeck-bench-flood-") as folder:
        async with connect(f"surrealkv://{Path(folder) / 'state.db'}") as db, Engine(db) as engine:
            with _RssSampler() as rss:
                start = time.perf_counter()
                workflow_id = await engine.submit(spec)
                status = await engine.wait(workflow_id)
                elapsed = time.perf_counter() - start
            stored_tasks = await engine.stores.tasks.list(workflow_id)
            workflow = await engine.stores.workflows.get(workflow_id)
            stored = sum(len(output_lines(e)) for e in await engine.stores.events.list(workflow_id))
    last_task = max((t.finished_at for t in stored_tasks if t.finished_at), default=None)
    lag = (workflow.finished_at - last_task).total_seconds() if workflow and workflow.finished_at and last_task else -1
    return {
        "output_flood": {
            "tasks": tasks,
            "lines_per_task": lines,
            "lines_stored": stored,
            "every_line_stored": stored == tasks * lines,
            "seconds": round(elapsed, 2),
            "lines_per_s": round(stored / elapsed) if elapsed > 0 else 0,
            "rss_before_mb": round(rss.before_mb, 1),
            "rss_peak_mb": round(rss.peak_mb, 1),
            "target_rss_mb": RSS_TARGET_MB,
            "end_after_last_task_s": round(lag, 3),
            "target_end_s": END_LAG_TARGET_S,
            "completed": status is WorkflowStatus.COMPLETED,
            "met": status is WorkflowStatus.COMPLETED
            and stored == tasks * lines
            and rss.peak_mb <= RSS_TARGET_MB
            and 0 <= lag <= END_LAG_TARGET_S,
        }
    }


async def concurrent_agents(agents: int) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(
        {
            "name": "bench-agents",
            "concurrency": agents,
            "agents": {"chatty": {"kind": "python", "callable": "bench.load_bench:chatty"}},
            "tasks": [{"id": f"a{i}", "agent": "chatty"} for i in range(agents)],
        }
    )
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="agentdeck-bench-agents-") as folder:
        async with connect(f"surrealkv://{Path(folder) / 'state.db'}") as db, Engine(db) as engine:
            subscription = engine.bus.subscribe()
            await subscription.wait_ready()

            async def listen() -> None:
                async for event in subscription:
                    latencies.append(time.time() - event.ts.timestamp())

            listener = asyncio.create_task(listen())
            with _RssSampler() as rss:
                start = time.perf_counter()
                workflow_id = await engine.submit(spec)
                status = await engine.wait(workflow_id)
                elapsed = time.perf_counter() - start
            await subscription.close()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    return {
        "concurrent_agents": {
            "agents": agents,
            "seconds": round(elapsed, 2),
            "events": len(latencies),
            "events_per_s": round(len(latencies) / elapsed) if elapsed > 0 else 0,
            **{f"event_latency_{k}": v for k, v in summary_ms(latencies).items() if k != "n"},
            "rss_before_mb": round(rss.before_mb, 1),
            "rss_peak_mb": round(rss.peak_mb, 1),
            "completed": status is WorkflowStatus.COMPLETED,
        }
    }


async def _in_own_process(section: str, size: int) -> dict[str, Any]:
    """Run one section in a fresh interpreter: its RSS is then the engine's, not what earlier sections left."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load_bench", "--one", section, str(size),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"bench.load_bench {section} failed ({child.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


async def run(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results.update(await _in_own_process("output_flood", 40 if quick else 200))
    results.update(await _in_own_process("concurrent_agents", 200 if quick else 1000))
    return results


if __name__ == "__main__":  # `python -m bench.load_bench --one SECTION SIZE`: one section, its result as JSON
    from bench import load_bench  # the engine imports ``chatty`` from there, not from ``__main__``

    _, _, section, size = sys.argv
    if section == "output_flood":
        print(json.dumps(asyncio.run(load_bench.output_flood(int(size), 10_000))))
    else:
        print(json.dumps(asyncio.run(load_bench.concurrent_agents(int(size)))))
