"""Real LangGraph graphs for the watchpoint tests: ``draft`` → ``check``, looping back to ``draft`` until the
check passed, so ``check`` runs ``rounds`` times (the demo's shape: a first draft with a bug, a fix, a pass)."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

STEP_S = 0.05  # each node takes a moment, as real work does


class State(TypedDict, total=False):
    revision: int
    passed: bool


def _loop(rounds: int) -> Any:
    async def draft(state: State) -> dict[str, Any]:
        await asyncio.sleep(STEP_S)
        return {"revision": state.get("revision", 0) + 1}

    async def check(state: State) -> dict[str, Any]:
        await asyncio.sleep(STEP_S)
        return {"passed": state.get("revision", 0) >= rounds}

    async def report(state: State) -> dict[str, Any]:
        return {}

    graph = StateGraph(State)
    graph.add_node("draft", draft)
    graph.add_node("check", check)
    graph.add_node("report", report)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "check")
    graph.add_conditional_edges("check", lambda state: "report" if state.get("passed") else "draft")
    graph.add_edge("report", END)
    return graph.compile()


checks_twice = _loop(2)
checks_once = _loop(1)
