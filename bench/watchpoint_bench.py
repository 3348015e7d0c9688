"""Watchpoints' cost on the engine's event path: the same event-heavy workflow with 20 watchpoints and with none.

The workflow: ``TASKS`` python tasks at once, each printing ``LINES`` output lines and emitting ``PROGRESS``
progress events, ``CALLS`` ``tool.called`` and ``CALLS`` ``llm.usage`` events (the types the watchpoints read) —
about 60,000 output lines and 12,000 other events. The 20 watchpoints cover every kind and never trigger (six
output regexes, budgets, tool repeats, node runs, failures and retries in windows, running timers, ``and``/``or``).

*Workflow* (``watchpoints_workflow``): wall time from submit to stored completion, the two variants taking turns
``REPEATS`` rounds (order rotating), on ``mem://`` and on ``surrealkv://``; the median ratio must stay within
``TARGET_RATIO`` (10 %).

*Per event* (``watchpoints_per_event``): the listener alone, fed the workflow's own stored events: µs per event
with 20 watchpoints armed (evaluation is synchronous: this is what each event costs the writer's commit path).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from db import connect
from db.models import EventType, Watchpoint, WorkflowStatus
from engine.agents.base import TaskContext
from engine.engine import Engine
from engine.spec import WorkflowSpec

__all__ = ["WATCHPOINTS", "chatter", "run"]

REPEATS = 3
TARGET_RATIO = 1.10
TASKS = 40
LINES = 1_500
PROGRESS = 100
CALLS = 100

#: Twenty watchpoints of every kind that the bench workflow never makes true.
WATCHPOINTS = [
    'output ~ "Traceback"',
    'output ~ "password|secret|token=[A-Za-z0-9]{20}"',
    'output ~ "^FATAL"',
    'output ~ "panic: .* goroutine"',
    'output ~ "Segmentation fault|core dumped"',
    'output ~ "(?i)out of memory"',
    "cost_usd > 1000",
    "tokens > 1000M",
    "tool_repeats >= 1000",
    "node check runs >= 1000",
    "node draft runs > 500",
    "failures >= 100 within 10m",
    "retries >= 100 within 1m",
    "failures >= 1000",
    "running > 1h",
    "running > 2h",
    "(cost_usd > 999 or tokens > 999M) and running > 1h",
    'output ~ "never-[0-9]+" or tool_repeats >= 900',
    "cost_usd > 500 and tokens > 500M",
    "retries >= 50 or failures >= 50",
]


def chatter(ctx: TaskContext) -> dict[str, Any]:
    """Print lines and emit the events the watchpoints read, as fast as the engine takes them."""
    per_call = max(1, LINES // CALLS)
    for index in range(LINES):
        ctx.log(f"{ctx.task.id} line {index}: building module {index % 97} ok")
        if index % per_call == 0:
            call = index // per_call
            ctx.event(EventType.TOOL_CALLED, tool="run_command", args=f'{{"command": "step {call}"}}', call=f"c{call}")
            ctx.event(EventType.LLM_USAGE, model="bench", total_tokens=100, cost_usd=0.0001)
        if index % (LINES // PROGRESS) == 0:
            ctx.progress(index / LINES)
    return {"lines": LINES}


def _spec(watch: list[str] | None = None) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "bench-watchpoints",
            "watch": watch or [],
            "concurrency": TASKS,
            "agents": {"chatter": {"kind": "python", "callable": "bench.watchpoint_bench:chatter"}},
            "tasks": [{"id": f"t{i}", "agent": "chatter"} for i in range(TASKS)],
        }
    )


async def _workflow(url: str, watched: bool) -> tuple[float, int]:
    """Seconds from submit to stored completion, and the events the workflow stored."""
    async with connect(url) as db, Engine(db) as engine:
        spec = _spec(WATCHPOINTS if watched else [])
        gc.collect()
        start = time.perf_counter()
        workflow_id = await engine.submit(spec)
        status = await engine.wait(workflow_id)
        seconds = time.perf_counter() - start
        if status is not WorkflowStatus.COMPLETED:
            raise RuntimeError(f"bench workflow ended {status.value}")
        if watched and len(await engine.watchpoints(workflow_id)) != len(WATCHPOINTS):
            raise RuntimeError("the bench watchpoints were not all declared")
        triggered = [e for e in await engine.stores.events.list(workflow_id) if e.type == "watchpoint.triggered"]
        if triggered:
            raise RuntimeError(f"a bench watchpoint triggered: {triggered[0].data}")
        return seconds, engine.recorder.last_seq(workflow_id)


async def workflow_ratio(url_of: Any, repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"none": [], "twenty": []}
    events = 0
    for round_ in range(repeats):
        order = ["none", "twenty"] if round_ % 2 == 0 else ["twenty", "none"]
        for name in order:
            with tempfile.TemporaryDirectory(prefix="agentdeck-bench-") as folder:
                seconds, events = await _workflow(url_of(folder), watched=name == "twenty")
            times[name].append(seconds)
    ratios = sorted(w / n for w, n in zip(times["twenty"], times["none"], strict=True))
    ratio = statistics.median(ratios)
    return {
        "events": events,
        "none_median_s": round(statistics.median(times["none"]), 3),
        "twenty_median_s": round(statistics.median(times["twenty"]), 3),
        "ratio_median": round(ratio, 3),
        "ratios": [round(r, 3) for r in ratios],
        "target_ratio": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }


async def per_event(repeats: int) -> dict[str, Any]:
    """The listener alone: µs per event with 20 watchpoints armed, fed a run's own stored events."""
    async with connect("mem://") as db, Engine(db) as engine:
        workflow_id = await engine.submit(_spec())
        await engine.wait(workflow_id)
        stored = await engine.stores.events.list(workflow_id)
        tasks = [e for e in stored if not e.type.startswith("workflow.")]  # an end event would disarm them
        samples = []
        for _ in range(repeats):
            for text in WATCHPOINTS:
                engine.watch.arm(Watchpoint(workflow=workflow_id, when=text))
            start = time.perf_counter()
            for event in tasks:
                engine.watch._on_event(event)
            samples.append((time.perf_counter() - start) / len(tasks))
            engine.watch.disarm(workflow_id)
    return {"events": len(tasks), "watchpoints": len(WATCHPOINTS), "us_per_event_median": round(
        statistics.median(samples) * 1e6, 2)}  # fmt: skip


def _surrealkv(folder: str) -> str:
    return f"surrealkv://{Path(folder) / 'state.db'}"


async def run(quick: bool) -> dict[str, Any]:
    repeats = 1 if quick else REPEATS
    await _workflow("mem://", watched=True)  # warm-up: imports, the parser, first-use costs
    return {
        "watchpoints_workflow_mem": await workflow_ratio(lambda folder: "mem://", repeats),
        "watchpoints_workflow_surrealkv": await workflow_ratio(_surrealkv, repeats),
        "watchpoints_per_event": await per_event(3),
    }
