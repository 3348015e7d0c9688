"""The peers the engine is measured against, running the same no-op DAG in the same process.

- **bare asyncio**: the DAG with asyncio tasks and events, nothing persisted (the floor).
- **LangGraph + AsyncSqliteSaver**: the DAG as a LangGraph ``StateGraph`` — one node per task, a task with two
  dependencies joined with ``add_edge([a, b], c)`` — checkpointed by langgraph's own SQLite saver in a temporary
  file, run with ``ainvoke`` as a LangGraph user would (default durability, ``max_concurrency`` = the engine's
  workflow concurrency). LangGraph persists each superstep's checkpoint and every node's writes, which is the
  same promise the engine makes (a crash resumes after the last completed work).

The DAG: layers of ``WIDTH`` tasks, each depending on two tasks of the previous layer.
"""

from __future__ import annotations

import asyncio
import operator
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

WIDTH = 50
CONCURRENCY = 64


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


async def noop(ctx: Any) -> None:
    """The task body: nothing, so what is measured is the engine around it."""
    return None


async def bare_asyncio(n: int) -> float:
    """The floor: the same DAG with asyncio tasks and events, nothing persisted."""
    edges = dag_edges(n)
    done = {key: asyncio.Event() for key in edges}
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(key: str) -> None:
        for dep in edges[key]:
            await done[dep].wait()
        async with limit:
            await noop(None)
        done[key].set()

    start = time.perf_counter()
    await asyncio.gather(*(one(key) for key in edges))
    return time.perf_counter() - start


class _DagState(TypedDict):
    done: Annotated[list[str], operator.add]


def _node(key: str) -> Any:
    async def run(state: _DagState) -> dict[str, list[str]]:
        return {"done": [key]}  # what each engine task records too: that it completed

    return run


def langgraph_dag(n: int) -> Any:
    """The DAG as an (uncompiled) LangGraph ``StateGraph``."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(_DagState)
    edges = dag_edges(n)
    has_dependents = {dep for deps in edges.values() for dep in deps}
    for key in edges:
        builder.add_node(key, _node(key))
    for key, deps in edges.items():
        if not deps:
            builder.add_edge(START, key)
        elif len(deps) == 1:
            builder.add_edge(deps[0], key)
        else:
            builder.add_edge(deps, key)  # a join: runs once both have completed
        if key not in has_dependents:
            builder.add_edge(key, END)
    return builder


async def langgraph_sqlite(n: int, builder: Any | None = None) -> tuple[float, bool]:
    """Run the DAG in LangGraph with ``AsyncSqliteSaver`` on a temporary file; returns (seconds, all ran)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    builder = builder or langgraph_dag(n)
    with tempfile.TemporaryDirectory(prefix="agentdeck-bench-lg-") as folder:
        async with AsyncSqliteSaver.from_conn_string(str(Path(folder) / "checkpoints.sqlite")) as saver:
            graph = builder.compile(checkpointer=saver)
            config: Any = {"configurable": {"thread_id": "bench"}, "max_concurrency": CONCURRENCY}
            config["recursion_limit"] = n + 10
            start = time.perf_counter()
            result = await graph.ainvoke({"done": []}, config)
            elapsed = time.perf_counter() - start
    return elapsed, len(result["done"]) == n
