"""The ``llm`` agent's memory tools: ``search_memory`` (find what agents remembered, by meaning) and ``remember``
(store a fact for later tasks and runs), bound to one task so what it remembers carries the task's provenance and
the graph step it was written in."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from db.models import MemoryHit, utcnow
from engine.agents.base import TaskContext

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

MEMORY_TOOL_NAMES = ("search_memory", "remember")
SHOWN_CHARS = 600  # of each memory the model sees


class SearchMemoryArgs(BaseModel):
    query: str = Field(description="What to look for, in plain words: memories are matched by meaning.")
    k: int = Field(default=5, ge=1, le=20, description="How many memories to return, best first.")
    only_mine: bool = Field(default=False, description="Only memories this agent wrote itself.")


class RememberArgs(BaseModel):
    content: str = Field(description="A fact, decision or lesson in one or two self-contained sentences.")
    memory_type: Literal["long_term", "short_term"] = Field(
        default="long_term", description="long_term: kept; short_term: forgotten after a day."
    )


def make_memory_tools(task: Any) -> dict[str, BaseTool]:
    """The memory tools; ``task()`` returns the bound ``TaskContext`` or raises ``ToolException``."""
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import StructuredTool, ToolException

    async def search_memory(query: str, k: int = 5, only_mine: bool = False) -> str:
        ctx: TaskContext = task()
        if not query.strip():
            raise ToolException("the query is empty: say what you are looking for")
        hits = await ctx.search_memory(query, k, agent=ctx.agent.name if only_mine else None)
        if not hits:
            return "no memories found"
        return ctx.scrub("\n".join(_line(i, hit) for i, hit in enumerate(hits, 1)))

    async def remember(content: str, config: RunnableConfig, memory_type: str = "long_term") -> str:
        ctx: TaskContext = task()
        if not content.strip():
            raise ToolException("there is nothing to remember: the content is empty")
        step = (config.get("metadata") or {}).get("langgraph_step")
        memory = await ctx.remember(content, memory_type, graph_step=step if isinstance(step, int) else None)
        return f"remembered ({memory.memory_type}, id {memory.id})"

    # LangChain passes the run's config to a parameter annotated RunnableConfig; it reads the annotation at run
    # time, which this module's postponed (string) annotations would hide, since LangChain is imported late here.
    remember.__annotations__["config"] = RunnableConfig

    return {
        "search_memory": StructuredTool.from_function(
            coroutine=search_memory,
            name="search_memory",
            description="Search what agents remembered in earlier tasks and runs (facts, decisions, lessons).",
            args_schema=SearchMemoryArgs,
            handle_tool_error=True,
        ),
        "remember": StructuredTool.from_function(
            coroutine=remember,
            name="remember",
            description="Remember a fact, decision or lesson so later tasks and runs can find it.",
            args_schema=RememberArgs,
            handle_tool_error=True,
        ),
    }


def _line(number: int, hit: MemoryHit) -> str:
    memory = hit.memory
    where = f", from {memory.task}" if memory.task else ""
    text = memory.content if len(memory.content) <= SHOWN_CHARS else memory.content[:SHOWN_CHARS] + " […]"
    return f"{number}. ({hit.score:.2f}; {memory.agent}, {_age(memory.created_at)}{where}) {text}"


def _age(when: datetime) -> str:
    seconds = max(0, int((utcnow() - when).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"
