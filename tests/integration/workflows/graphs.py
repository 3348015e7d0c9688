"""Real LangGraph graphs the graph-agent tests run. Node executions are counted in ``RUNS`` so a test can tell
exactly which nodes ran again after a cancel, a resume or a fork; ``GATES`` hold a node mid-execution."""

from __future__ import annotations

import asyncio
import operator
from collections import Counter
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

RUNS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
STARTED: dict[str, asyncio.Event] = {}


class State(TypedDict, total=False):
    topic: str
    log: Annotated[list[str], operator.add]
    count: int
    answer: Any


def _node(name: str, *, hold: bool = False) -> Any:
    async def run(state: State) -> dict[str, Any]:
        RUNS[name] += 1
        get_stream_writer()({"message": f"{name} working on {state.get('topic', '?')}"})
        if name in STARTED:
            STARTED[name].set()
        if hold and name in GATES:
            try:
                await GATES[name].wait()
            except asyncio.CancelledError:
                RUNS[f"{name} cancelled"] += 1
                raise
        return {"log": [name], "count": state.get("count", 0) + 1}

    return run


def _build(*, hold: str | None = None, ask: bool = False, stop_before: list[str] | None = None) -> Any:
    graph = StateGraph(State)
    names = ["plan", "write", "check", "report"]
    for name in names:
        graph.add_node(name, _node(name, hold=name == hold))
    if ask:
        graph.add_node("approve", approve)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "write")
    graph.add_edge("write", "check")
    if ask:
        graph.add_edge("check", "approve")
        graph.add_edge("approve", "report")
    else:
        graph.add_edge("check", "report")
    graph.add_edge("report", END)
    return graph.compile(interrupt_before=stop_before)


async def approve(state: State) -> dict[str, Any]:
    RUNS["approve"] += 1
    answer = interrupt({"question": f"ship {state.get('topic')}?", "default": "auto", **DEADLINE})
    return {"answer": answer, "log": [f"approve:{answer}"]}


DEADLINE: dict[str, Any] = {}

linear = _build()
held_in_write = _build(hold="write")
with_approval = _build(ask=True)


def factory() -> Any:
    """A factory (no parameters) returning a compiled graph."""
    return _build()


def reset() -> None:
    RUNS.clear()
    GATES.clear()
    STARTED.clear()
    DEADLINE.clear()


async def wait_until_check_runs() -> str:
    """A python task that completes (a workflow checkpoint) while the graph task is inside its ``check`` node."""
    await STARTED["check"].wait()
    return "saw check"


held_in_check = _build(hold="check")
with_breakpoint = _build(stop_before=["check"])


def chatty(model: Any) -> Any:
    """A one-node graph whose node calls a chat model (streaming its reply)."""

    async def speak(state: State) -> dict[str, Any]:
        message = await model.ainvoke(f"write about {state.get('topic')}")
        return {"answer": message.content}

    graph = StateGraph(State)
    graph.add_node("speak", speak)
    graph.add_edge(START, "speak")
    graph.add_edge("speak", END)
    return graph.compile()


async def ask_with_token(state: State) -> dict[str, Any]:
    import os

    answer = interrupt({"question": f"deploy with token {os.environ.get('AGENTDECK_TEST_TOKEN')}?"})
    return {"answer": answer}


def _leaky() -> Any:
    graph = StateGraph(State)
    graph.add_node("ask", ask_with_token)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


leaky = _leaky()


def remembering(ctx: Any) -> Any:
    """plan → write → check → report, each node remembering that it ran (the graph step is recorded for it)."""
    graph = StateGraph(State)
    names = ["plan", "write", "check", "report"]

    def node(name: str) -> Any:
        async def run(state: State) -> dict[str, Any]:
            RUNS[name] += 1
            await ctx.remember(f"the {name} step of {state.get('topic', '?')} is done")
            return {"log": [name]}

        return run

    for name in names:
        graph.add_node(name, node(name))
    for first, then in zip([START, *names], [*names, END], strict=True):
        graph.add_edge(first, then)
    return graph.compile()
