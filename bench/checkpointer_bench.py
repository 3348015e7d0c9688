"""LangGraph checkpointer latency: our ``SurrealSaver`` on ``mem://`` next to langgraph's ``AsyncSqliteSaver``.

Each saver runs the same steps a graph makes: ``aput`` a checkpoint (a few channels, one of them a list of 20
message-like dicts, ~5 KB serialized) as the child of the thread's previous one, ``aput_writes`` two task
writes against it, and ``aget_tuple`` the thread's latest checkpoint (with those writes), over 20 threads.
The peers are SQLite in a temporary file (WAL, as the saver sets it up) and SQLite ``:memory:`` (the
like-for-like peer of ``mem://``). All three run in this process, alternating in blocks of 20 steps with the
order rotating, so none gets the warm caches alone. Target: ``aput`` p50 ≤ 1.5 ms and at most 5 times SQLite
``:memory:``'s p50.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint, CheckpointMetadata, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bench._stats import summary_ms
from db import connect
from db.checkpointer import SurrealSaver

THREADS = 20
BLOCK = 20
TARGET_P50_MS = 1.5
TARGET_RATIO = 5.0
OPS = ("aput", "aput_writes", "aget_tuple")


def messages(step: int) -> list[dict[str, Any]]:
    """Twenty chat-message-like dicts, as a ``messages`` channel holds them."""
    return [
        {
            "type": "human" if i % 2 == 0 else "ai",
            "id": f"msg-{step}-{i}",
            "content": f"Step {step}, message {i}: please look at module {i} and report what changed. " * 2,
            "additional_kwargs": {},
            "response_metadata": {"model": "bench", "tokens": 120 + i} if i % 2 else {},
            "tool_calls": [{"name": "read_file", "args": {"path": f"src/m{i}.py"}, "id": f"call-{i}"}] if i % 2 else [],
        }
        for i in range(20)
    ]


class Steps:
    """One saver's side of the workload: each thread's latest config, advanced one graph step at a time."""

    def __init__(self, name: str, saver: BaseCheckpointSaver[Any]) -> None:
        self.name = name
        self.saver = saver
        self.latest: dict[str, RunnableConfig] = {}
        self.versions: dict[str, Any] = {}
        self.timings: dict[str, list[float]] = {op: [] for op in OPS}

    def checkpoint(self, step: int) -> tuple[Checkpoint, dict[str, Any]]:
        changed = ["messages", "step_count"] + (["plan"] if step % 5 == 0 else [])
        for channel in changed:
            self.versions[channel] = self.saver.get_next_version(self.versions.get(channel), None)
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=-1))
        checkpoint["channel_values"] = {
            "messages": messages(step),
            "step_count": step,
            "plan": {"goal": "refactor the parser", "items": [f"item {i}" for i in range(8)], "done": step % 8},
            "branch:to:agent": None,
        }
        checkpoint["channel_versions"] = dict(self.versions)
        checkpoint["versions_seen"] = {"agent": dict(self.versions), "tools": {"messages": self.versions["messages"]}}
        return checkpoint, {channel: self.versions[channel] for channel in changed}

    async def step(self, step: int, record: bool) -> None:
        thread = f"thread-{step % THREADS}"
        config: RunnableConfig = self.latest.get(thread) or {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        checkpoint, new_versions = self.checkpoint(step)
        metadata: CheckpointMetadata = {"source": "loop", "step": step, "parents": {}, "run_id": f"run-{step // 100}"}
        saved = await self._timed("aput", record, lambda: self.saver.aput(config, checkpoint, metadata, new_versions))
        self.latest[thread] = saved
        writes = [("messages", messages(step)[:1]), ("step_count", step + 1)]
        await self._timed("aput_writes", record, lambda: self.saver.aput_writes(saved, writes, f"task-{step}"))
        found = await self._timed(
            "aget_tuple",
            record,
            lambda: self.saver.aget_tuple({"configurable": {**saved["configurable"], "checkpoint_id": None}}),
        )
        if found is None or found.checkpoint["id"] != checkpoint["id"] or len(found.pending_writes or []) != 2:
            raise RuntimeError(f"{self.name}: step {step} did not read back what it wrote")

    async def _timed(self, op: str, record: bool, call: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        result = await call()
        if record:
            self.timings[op].append(time.perf_counter() - start)
        return result


async def run(quick: bool) -> dict[str, dict[str, Any]]:
    n = 200 if quick else 2000
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(connect("mem://"))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agentdeck-bench-")))
        sqlite_file = await stack.enter_async_context(aiosqlite.connect(tmp / "checkpoints.sqlite"))
        sqlite_memory = await stack.enter_async_context(aiosqlite.connect(":memory:"))
        sides = [
            Steps("surreal_mem", SurrealSaver(db)),
            Steps("sqlite_file", AsyncSqliteSaver(sqlite_file)),
            Steps("sqlite_memory", AsyncSqliteSaver(sqlite_memory)),
        ]
        for side in sides:  # warm-up: schema setup, first-use costs; not recorded
            for step in range(THREADS):
                await side.step(step, record=False)
        for block in range(0, n, BLOCK):
            turn = (block // BLOCK) % len(sides)
            for side in sides[turn:] + sides[:turn]:
                for step in range(block + THREADS, min(block + BLOCK, n) + THREADS):
                    await side.step(step, record=True)
        payload = len(sides[0].saver.serde.dumps_typed(sides[0].checkpoint(0)[0])[1])
    return {f"checkpointer_{op}": _figures(op, sides, n, payload) for op in OPS}


def _figures(op: str, sides: list[Steps], n: int, payload: int) -> dict[str, Any]:
    stats = {side.name: summary_ms(side.timings[op]) for side in sides}
    ours = stats["surreal_mem"]["p50_ms"]
    figures: dict[str, Any] = {"n": n, "checkpoint_bytes": payload}
    for name, summary in stats.items():
        figures[f"{name}_p50_ms"] = summary["p50_ms"]
        figures[f"{name}_p99_ms"] = summary["p99_ms"]
    for peer in ("sqlite_file", "sqlite_memory"):
        base = stats[peer]["p50_ms"]
        figures[f"ratio_vs_{peer}"] = round(ours / base, 2) if base > 0 else None
    if op == "aput":
        ratio = figures["ratio_vs_sqlite_memory"]
        figures["target"] = f"p50 <= {TARGET_P50_MS} ms and <= {TARGET_RATIO:g}x sqlite :memory: p50"
        figures["met"] = ours <= TARGET_P50_MS and ratio is not None and ratio <= TARGET_RATIO
    return figures
