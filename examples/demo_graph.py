"""The demo's graph agent: a LangGraph graph that writes the package's code, offline and deterministically.

    outline → draft → check ─(a check failed)→ draft       (a cycle: the first draft has a bug on purpose)
                        └──(all pass)→ review ─(denied)→ draft
                                          └──(approved)→ save

``review`` asks a person with ``interrupt()``; in the demo workflow the agent's options give it a deadline and a
default answer, so an unattended demo approves itself after ~15 s. Every node reports what it does through the
stream writer, so the pane shows the graph working node by node, and each step is a checkpoint you can time
travel to from the dashboard (``t`` on the task).
"""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from demo_agents import CODE
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

# The first draft of sentence_count forgets "?" and "!": the check node catches it and the graph loops back.
_BUGGY = {
    "sentence_count": '''
def sentence_count(text: str) -> int:
    """Sentences, counted by their final punctuation."""
    return max(1, text.count(".")) if text.strip() else 0
''',
}

_CHECKS: dict[str, tuple[tuple[Any, ...], Any]] = {
    "word_count": (("one two  three",), 3),
    "top_words": (("a b a c a b", 2), [("a", 3), ("b", 2)]),
    "reading_time": (("word " * 460,), 2.0),
    "sentence_count": (("Hi. How are you? Fine!",), 3),
}

PAUSE_S = 0.5  # how long each unit of work takes, so a person can watch the nodes go by


class CoderState(TypedDict, total=False):
    upstream: dict[str, Any]
    package: str
    functions: list[str]
    revision: int
    source: str
    failures: list[str]
    notes: Annotated[list[str], operator.add]
    approved: Any
    dir: str


def _say(message: str, progress: float | None = None) -> None:
    writer = get_stream_writer()
    writer({"message": message})
    if progress is not None:
        writer({"progress": progress, "message": message})


async def outline(state: CoderState) -> dict[str, Any]:
    plan = (state.get("upstream") or {}).get("plan") or {}
    package = str(plan.get("package", "textstats"))
    functions = [f for f in plan.get("functions", list(CODE)) if f in CODE]
    for index, name in enumerate(functions, 1):
        _say(f"outlining {package}.{name}", 0.1 * index / len(functions))
        await asyncio.sleep(PAUSE_S / 2)
    return {"package": package, "functions": functions, "revision": 0, "notes": [f"outline: {len(functions)} fns"]}


async def draft(state: CoderState) -> dict[str, Any]:
    revision = state.get("revision", 0) + 1
    failures = set(state.get("failures") or [])
    parts = []
    for name in state["functions"]:
        buggy = revision == 1 and name in _BUGGY
        fixing = name in failures
        _say(f"draft r{revision}: {'fixing' if fixing else 'writing'} {name}", 0.2 + 0.1 * revision)
        parts.append(_BUGGY[name] if buggy else CODE[name])
        await asyncio.sleep(PAUSE_S)
    source = '"""Small text statistics."""\n\nimport os\nfrom collections import Counter\n' + "".join(parts)
    return {"revision": revision, "source": source, "notes": [f"draft r{revision}: {len(source.splitlines())} lines"]}


async def check(state: CoderState) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(state["source"], f"{state['package']}/stats.py", "exec"), namespace)  # our own template code
    failures = []
    for name in state["functions"]:
        args, expected = _CHECKS[name]
        got = namespace[name](*args)
        verdict = "ok" if got == expected else f"FAILED: got {got!r}, expected {expected!r}"
        _say(f"check {name}: {verdict}")
        if got != expected:
            failures.append(name)
        await asyncio.sleep(PAUSE_S / 2)
    _say(f"{len(state['functions']) - len(failures)}/{len(state['functions'])} checks pass", 0.6)
    return {"failures": failures, "notes": [f"check r{state['revision']}: {len(failures)} failing"]}


def after_check(state: CoderState) -> str:
    return "draft" if state.get("failures") else "review"


async def review(state: CoderState) -> dict[str, Any]:
    lines = len(state["source"].splitlines())
    answer = interrupt(
        {
            "question": f"Ship {state['package']}/stats.py? ({len(state['functions'])} functions, {lines} lines, "
            f"all checks pass after {state['revision']} drafts)",
            "functions": state["functions"],
        }
    )
    _say(f"review answered: {answer!r}", 0.8)
    return {"approved": answer, "notes": [f"review: {answer!r}"]}


def after_review(state: CoderState) -> str:
    return "draft" if state.get("approved") is False else "save"


async def save(state: CoderState, config: RunnableConfig) -> dict[str, Any]:
    workdir = Path(config["configurable"]["workdir"])
    package, functions = state["package"], state["functions"]
    root = workdir / "src" / package
    root.mkdir(parents=True, exist_ok=True)
    (root / "stats.py").write_text(state["source"])
    exports = ", ".join(functions)
    (root / "__init__.py").write_text(
        f'"""{package}: small text statistics."""\n\nfrom {package}.stats import {exports}\n\n__all__ = {functions!r}\n'
    )
    _say(f"saved {root / 'stats.py'}", 1.0)
    return {"dir": str(workdir), "notes": ["saved"]}


def build() -> Any:
    graph = StateGraph(CoderState)
    for node in (outline, draft, check, review, save):
        graph.add_node(node.__name__, node)  # type: ignore[call-overload]
    graph.add_edge(START, "outline")
    graph.add_edge("outline", "draft")
    graph.add_edge("draft", "check")
    graph.add_conditional_edges("check", after_check, ["draft", "review"])
    graph.add_conditional_edges("review", after_review, ["draft", "save"])
    graph.add_edge("save", END)
    return graph.compile()


coder = build()
