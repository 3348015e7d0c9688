"""``SurrealSaver`` against langgraph's ``AsyncSqliteSaver`` as the reference: same scenarios, same observations.

Real LangGraph graphs (a loop, ``interrupt()`` answered with ``Command(resume=...)``, a node failing beside one
that succeeds) run to completion on each saver; the final state, the state history, the pending writes left by a
failed step and ``alist`` with filter/before/limit must come out the same. Also: the sync methods refuse the
event loop's thread and work from any other, and a graph resumes from a ``surrealkv://`` store reopened after
closing.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.serde.types import ERROR
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Interrupt, interrupt

import db.checkpointer
from db import Database, connect
from db.checkpointer import SurrealSaver


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    count: int
    approved: bool


def plan(state: State) -> State:
    return {"log": ["plan"], "count": 0}


def work(state: State) -> State:
    return {"log": [f"work{state['count'] + 1}"], "count": state["count"] + 1}


def review(state: State) -> State:
    answer = interrupt({"question": "ship it?", "count": state["count"]})
    return {"approved": answer == "yes", "log": [f"review:{answer}"]}


def finish(state: State) -> State:
    return {"log": ["done"]}


def looping_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """plan → work ⟲ (until count ≥ 3) → review (interrupts) → finish, or back to work if not approved."""
    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("work", work)
    builder.add_node("review", review)
    builder.add_node("finish", finish)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "work")
    builder.add_conditional_edges("work", lambda s: "work" if s["count"] < 3 else "review", ["work", "review"])
    builder.add_conditional_edges("review", lambda s: "finish" if s["approved"] else "work", ["finish", "work"])
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=saver)


@dataclass
class Flaky:
    """A graph where ``steady`` and ``flaky`` run in the same step and ``flaky`` fails until told not to.

    ``flaky`` fails a little after ``steady`` has finished, so ``steady``'s writes are saved, not cancelled.
    """

    fail: bool = True
    steady_runs: int = 0

    def graph(self, saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
        async def steady(state: State) -> State:
            self.steady_runs += 1
            return {"log": ["steady"]}

        async def flaky(state: State) -> State:
            await asyncio.sleep(0.05)
            if self.fail:
                raise ValueError("flaky node failed")
            return {"log": ["flaky"]}

        builder = StateGraph(State)
        builder.add_node("steady", steady)
        builder.add_node("flaky", flaky)
        builder.add_edge(START, "steady")
        builder.add_edge(START, "flaky")
        builder.add_edge("steady", END)
        builder.add_edge("flaky", END)
        return builder.compile(checkpointer=saver)


def concat(state: list[int], writes: Sequence[list[int]]) -> list[int]:
    return state + [item for write in writes for item in write]


class DeltaState(TypedDict, total=False):
    items: Annotated[list[int], DeltaChannel(concat, snapshot_frequency=3)]
    count: int


def delta_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """One node looping 7 times, appending to a ``DeltaChannel`` that snapshots every 3rd update."""

    def add(state: DeltaState) -> DeltaState:
        return {"items": [state.get("count", 0)], "count": state.get("count", 0) + 1}

    builder = StateGraph(DeltaState)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_conditional_edges("add", lambda s: "add" if s["count"] < 7 else END, ["add", END])
    return builder.compile(checkpointer=saver)


def thread(name: str) -> RunnableConfig:
    return {"configurable": {"thread_id": name}}


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "reference.sqlite")) as saver:
        yield saver


@pytest.fixture
async def ours(database: Database) -> SurrealSaver:
    return SurrealSaver(database)


async def run_looping(saver: BaseCheckpointSaver[Any], name: str = "loop") -> dict[str, Any]:
    """Run the looping graph through two interrupts ("no", then "yes"); return what a user can observe."""
    graph = looping_graph(saver)
    config = thread(name)
    first = await graph.ainvoke({"log": []}, config)
    second = await graph.ainvoke(Command(resume="no"), config)
    final = await graph.ainvoke(Command(resume="yes"), config)
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    state = await graph.aget_state(config)
    return {
        "interrupts": [[i.value for i in result["__interrupt__"]] for result in (first, second)],
        "final": final,
        "state": (state.values, state.next, state.metadata),
        "history": [
            (
                s.metadata,
                s.next,
                s.values,
                [t.name for t in s.tasks],
                [i.value for i in s.interrupts],
                s.parent_config is None,
            )
            for s in history
        ],
    }


async def test_a_looping_graph_with_interrupts_matches_sqlite(reference: AsyncSqliteSaver, ours: SurrealSaver) -> None:
    expected = await run_looping(reference)
    observed = await run_looping(ours)
    assert observed["final"]["log"] == ["plan", "work1", "work2", "work3", "review:no", "work4", "review:yes", "done"]
    assert observed["interrupts"] == [[{"question": "ship it?", "count": 3}], [{"question": "ship it?", "count": 4}]]
    assert len(observed["history"]) == len(expected["history"]) >= 10
    for step, (got, want) in enumerate(zip(observed["history"], expected["history"], strict=True)):
        assert got == want, f"history entry {step} differs"
    assert observed == expected


def comparable(value: Any) -> str:
    """A write's value as text, with interrupts by their value: their ids hash checkpoint ids, which differ."""
    if isinstance(value, Interrupt):
        return f"Interrupt({value.value!r})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(comparable(item) for item in value) + "]"
    return repr(value)


def write_view(pending: list[tuple[str, str, Any]] | None) -> list[tuple[str, str]]:
    return sorted((channel, comparable(value)) for _, channel, value in pending or [])


async def run_flaky(saver: BaseCheckpointSaver[Any]) -> dict[str, Any]:
    flaky = Flaky()
    graph = flaky.graph(saver)
    config = thread("flaky")
    with pytest.raises(ValueError, match="flaky node failed"):
        await graph.ainvoke({"log": []}, config)
    failed = await saver.aget_tuple(config)
    assert failed is not None
    state = await graph.aget_state(config)
    flaky.fail = False
    final = await graph.ainvoke(None, config)
    return {
        "pending": write_view(failed.pending_writes),
        "tasks": sorted((t.name, t.error is not None) for t in state.tasks),
        "final": sorted(final["log"]),
        "steady_runs": flaky.steady_runs,
    }


async def test_pending_writes_of_a_failed_step_match_sqlite(reference: AsyncSqliteSaver, ours: SurrealSaver) -> None:
    expected = await run_flaky(reference)
    observed = await run_flaky(ours)
    assert ("log", "['steady']") in observed["pending"]
    assert any(channel == ERROR for channel, _ in observed["pending"])
    assert observed["tasks"] == [("flaky", True), ("steady", False)]
    assert observed["steady_runs"] == 1, "resuming re-ran a node whose writes were saved"
    assert observed == expected


def list_view(tuples: list[CheckpointTuple]) -> list[tuple[Any, ...]]:
    return [
        (
            t.config["configurable"]["thread_id"],
            t.config["configurable"]["checkpoint_ns"],
            t.metadata.get("source"),
            t.metadata.get("step"),
            t.checkpoint["channel_values"].get("log"),
            write_view(t.pending_writes),
            t.parent_config is None,
        )
        for t in tuples
    ]


async def listings(saver: BaseCheckpointSaver[Any]) -> dict[str, list[tuple[Any, ...]]]:
    await run_looping(saver, "first")
    await run_looping(saver, "second")

    async def listed(config: RunnableConfig | None, **kwargs: Any) -> list[tuple[Any, ...]]:
        return list_view([t async for t in saver.alist(config, **kwargs)])

    everything = [t async for t in saver.alist(thread("first"))]
    cursor = everything[4].config
    return {
        "thread": await listed(thread("first")),
        "thread_and_root_ns": await listed({"configurable": {"thread_id": "first", "checkpoint_ns": ""}}),
        "loop_source": await listed(thread("first"), filter={"source": "loop"}),
        "step_and_source": await listed(thread("first"), filter={"source": "loop", "step": 3}),
        "no_match": await listed(thread("first"), filter={"source": "update"}),
        "before": await listed(thread("first"), before=cursor),
        "before_limit": await listed(thread("first"), before=cursor, limit=2),
        "limit": await listed(thread("first"), limit=3),
        "one_checkpoint": await listed(cursor),
        "all_threads": await listed(None),
        "all_threads_inputs": await listed(None, filter={"source": "input"}, limit=5),
    }


@pytest.mark.parametrize("page", [3, 100])
async def test_alist_matches_sqlite(
    reference: AsyncSqliteSaver, ours: SurrealSaver, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db.checkpointer, "_PAGE", page)  # 3: every listing spans several round trips
    expected = await listings(reference)
    observed = await listings(ours)
    assert len(observed["thread"]) >= 10 and len(observed["all_threads"]) == 2 * len(observed["thread"])
    assert len(observed["before_limit"]) == 2 and len(observed["limit"]) == 3 and len(observed["one_checkpoint"]) == 1
    assert observed["no_match"] == []
    for name, rows in expected.items():
        assert observed[name] == rows, f"alist {name} differs"


async def test_delete_thread_leaves_nothing(
    reference: AsyncSqliteSaver, ours: SurrealSaver, database: Database
) -> None:
    for saver in (reference, ours):
        await run_flaky(saver)
        await run_looping(saver, "kept")
        await saver.adelete_thread("flaky")
        assert [t async for t in saver.alist(thread("flaky"))] == []
        assert await saver.aget_tuple(thread("flaky")) is None
        assert len([t async for t in saver.alist(thread("kept"))]) >= 10
    left = await database.query(
        "RETURN count(SELECT id FROM lg_checkpoint WHERE thread_id = 'flaky');"
        "RETURN count(SELECT id FROM lg_write WHERE thread_id = 'flaky');"
        "RETURN count(SELECT id FROM lg_write WHERE thread_id = 'kept');"
    )
    assert left[:2] == [0, 0]
    assert left[2] > 0


SYNC_CALLS = ["get_tuple", "list", "put", "put_writes", "delete_thread"]


def call_sync(saver: BaseCheckpointSaver[Any], method: str, config: RunnableConfig, found: CheckpointTuple) -> Any:
    if method == "get_tuple":
        return saver.get_tuple(config)
    if method == "list":
        return list(saver.list(config))
    if method == "put":
        checkpoint = {**found.checkpoint, "id": found.checkpoint["id"][:-1] + "f"}
        return saver.put(found.config, checkpoint, {"source": "update", "step": 99}, {})  # type: ignore[arg-type]
    if method == "put_writes":
        return saver.put_writes(found.config, [("log", ["from a thread"])], "sync-task")
    return saver.delete_thread(config["configurable"]["thread_id"])


@pytest.mark.timeout(60)  # without the guard a sync call on the loop thread deadlocks: fail fast, not at 300 s
@pytest.mark.parametrize("method", SYNC_CALLS)
async def test_sync_methods_refuse_the_loop_thread_and_work_from_others(
    reference: AsyncSqliteSaver, ours: SurrealSaver, method: str
) -> None:
    for saver in (reference, ours):
        await run_looping(saver, "sync")
        config = thread("sync")
        found = await saver.aget_tuple(config)
        assert found is not None
        if method in ("get_tuple", "list", "delete_thread"):  # AsyncSqliteSaver guards only these
            with pytest.raises(asyncio.InvalidStateError, match="async"):
                call_sync(saver, method, config, found)
        result = await asyncio.to_thread(call_sync, saver, method, config, found)
        if method == "get_tuple":
            assert result == found
        elif method == "list":
            assert list_view(result) == list_view([t async for t in saver.alist(config)])
        elif method == "put":
            assert (await saver.aget_tuple(result)).metadata["step"] == 99  # type: ignore[union-attr]
        elif method == "put_writes":
            assert ("log", "['from a thread']") in write_view((await saver.aget_tuple(found.config)).pending_writes)  # type: ignore[union-attr]
        else:
            assert await saver.aget_tuple(config) is None


@pytest.mark.timeout(60)
async def test_every_sync_method_names_the_async_one_on_the_loop_thread(ours: SurrealSaver) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c"}}
    calls: dict[str, Callable[[], Any]] = {
        "aget_tuple": lambda: ours.get_tuple(config),
        "alist": lambda: next(iter(ours.list(config))),
        "aput": lambda: ours.put(config, {"id": "c"}, {}, {}),  # type: ignore[typeddict-item]
        "aput_writes": lambda: ours.put_writes(config, [], "task"),
        "adelete_thread": lambda: ours.delete_thread("t"),
    }
    for name, call in calls.items():
        with pytest.raises(asyncio.InvalidStateError, match=rf"checkpointer\.{name}\(.*ainvoke"):
            call()


async def test_a_sync_graph_runs_from_a_worker_thread(reference: AsyncSqliteSaver, ours: SurrealSaver) -> None:
    results = []
    for saver in (reference, ours):
        graph = looping_graph(saver)
        config = thread("threaded")
        await asyncio.to_thread(graph.invoke, {"log": []}, config)
        results.append(await asyncio.to_thread(graph.invoke, Command(resume="yes"), config))
    assert results[0] == results[1]
    assert results[1]["log"][-1] == "done"


async def test_a_graph_resumes_from_a_reopened_surrealkv_store(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path / 'graphs.db'}"
    config = thread("durable")
    async with connect(url) as first:
        paused = await looping_graph(SurrealSaver(first)).ainvoke({"log": []}, config)
    assert "__interrupt__" in paused
    async with connect(url) as second:
        graph = looping_graph(SurrealSaver(second))
        state = await graph.aget_state(config)
        assert state.next == ("review",)
        assert state.values["log"] == ["plan", "work1", "work2", "work3"]
        final = await graph.ainvoke(Command(resume="yes"), config)
        history = [s async for s in graph.aget_state_history(config)]
    assert final["log"] == ["plan", "work1", "work2", "work3", "review:yes", "done"]
    assert [s.metadata["step"] for s in history] == list(range(len(history) - 2, -2, -1))  # type: ignore[index]


async def scripted_writes(saver: BaseCheckpointSaver[Any]) -> list[tuple[str, str, Any]]:
    """Writes from tasks with different paths, out of order, some repeated; what comes back and in what order."""
    checkpoint = empty_checkpoint()
    saved = await saver.aput({"configurable": {"thread_id": "w", "checkpoint_ns": ""}}, checkpoint, {}, {})
    await saver.aput_writes(saved, [("x", "b first"), ("y", 1)], "task-b", task_path="~1")
    await saver.aput_writes(saved, [("x", "a")], "task-a", task_path="~0")
    await saver.aput_writes(saved, [("x", "b again"), ("y", 2), ("z", 3)], "task-b", task_path="~1")
    await saver.aput_writes(saved, [(ERROR, "first error")], "task-c")
    await saver.aput_writes(saved, [(ERROR, "second error")], "task-c")
    found = await saver.aget_tuple(saved)
    assert found is not None
    return list(found.pending_writes or [])


async def test_pending_writes_order_and_idempotency_match_sqlite(
    reference: AsyncSqliteSaver, ours: SurrealSaver
) -> None:
    expected = await scripted_writes(reference)
    observed = await scripted_writes(ours)
    assert observed == [
        ("task-c", ERROR, "second error"),  # no task path sorts first; special writes overwrite
        ("task-a", "x", "a"),
        ("task-b", "x", "b first"),  # a regular write already stored is kept
        ("task-b", "y", 1),
        ("task-b", "z", 3),
    ]
    assert observed == expected


async def run_delta(saver: BaseCheckpointSaver[Any]) -> tuple[Any, list[Any]]:
    graph = delta_graph(saver)
    final = await graph.ainvoke({"items": []}, thread("delta"))
    return final, [(s.values, s.next, s.metadata) async for s in graph.aget_state_history(thread("delta"))]


async def test_a_delta_channel_graph_matches_sqlite_and_survives_prune(
    reference: AsyncSqliteSaver, ours: SurrealSaver
) -> None:
    expected = await run_delta(reference)
    final, history = await run_delta(ours)
    assert final == {"items": [0, 1, 2, 3, 4, 5, 6], "count": 7}
    assert (final, history) == expected
    await ours.aprune(["delta"], strategy="keep_latest")
    kept = [t async for t in ours.alist(thread("delta"))]
    # The latest checkpoint is not a snapshot point, so its chain back to the last snapshot must survive.
    assert 1 < len(kept) < len(history)
    assert "counters_since_delta_snapshot" not in kept[-1].metadata
    state = await delta_graph(ours).aget_state(thread("delta"))
    assert state.values == final
