"""The agent base: what a task's agent gets to work with (``TaskContext``) and what it must provide.

An agent runs one attempt of one task. The coordinator owns everything around it — concurrency limits,
timeouts, retries, pause and cancel — so an agent only does its work, reports output and progress through the
context, and calls ``await ctx.step()`` (or ``ctx.step_sync()`` from a thread) at its step boundaries, where a
pause holds it and a cancel stops it.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from db.models import Memory, MemoryHit
from engine.errors import EngineError
from engine.sandbox import Sandbox
from engine.spec import AgentSpec, TaskSpec


class TaskCancelled(EngineError):
    """Raised at a step boundary of a synchronous agent whose task was cancelled."""


async def _nothing_to_watch() -> None:
    return None


@dataclass
class TaskContext:
    """Everything one attempt of a task may use."""

    workflow: str
    task: TaskSpec
    agent: AgentSpec
    attempt: int
    input: dict[str, Any]
    upstream: dict[str, Any]
    workdir: Path
    sandbox_factory: Callable[[], Sandbox]
    upstream_workdirs: list[Path]
    env: dict[str, str]
    redact: list[str]
    emit_output: Callable[[str, str], None]
    #: Many lines of one stream at once (a shell command's output as it is read).
    emit_lines: Callable[[str, list[str]], None]
    emit_progress: Callable[[float, str], None]
    gate: asyncio.Event
    loop: asyncio.AbstractEventLoop
    emit_event: Callable[[str, dict[str, Any]], None] = field(default=lambda type, data: None)
    record_metric: Callable[[str, float], None] = field(default=lambda name, value: None)
    graph: Any = None  # graph agents: an ``engine.graph.GraphSupport`` (thread, saver, approvals, node rows)
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: None while the task may print on; else an awaitable that completes once its output has been stored. The
    #: sandbox stops reading a command's pipes meanwhile, and ``step()`` waits on it, so output is read only as
    #: fast as it is stored.
    output_backlog: Callable[[], Awaitable[None] | None] = field(default=lambda: None)
    #: Whether ``output_backlog`` would hold the task now; a plain read, safe from any thread.
    output_backlogged: Callable[[], bool] = field(default=lambda: False)
    #: The run's memory writer for this attempt (fills in provenance) and the memory search.
    remember_memory: Callable[..., Awaitable[Memory]] | None = None
    search_memories: Callable[..., Awaitable[list[MemoryHit]]] | None = None
    #: Completes once the engine's watchpoints have seen every event of the workflow so far, and a pause one of them
    #: started is in effect (``watched``).
    watch_seen: Callable[[], Awaitable[None]] = field(default=_nothing_to_watch)

    @property
    def sandbox(self) -> Sandbox:
        """The task's sandbox; made (and its working directory created) on first use."""
        return self.sandbox_factory()

    def log(self, line: str, stream: str = "stdout") -> None:
        """Show a line in the agent's pane (a ``task.output`` event). Safe from any thread."""
        text = self.scrub(line)
        if _in_loop(self.loop):
            self.emit_output(stream, text)
        else:
            self.loop.call_soon_threadsafe(self.emit_output, stream, text)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1] (a ``task.progress`` event). Safe from any thread."""
        value = max(0.0, min(1.0, float(fraction)))
        if _in_loop(self.loop):
            self.emit_progress(value, message)
        else:
            self.loop.call_soon_threadsafe(self.emit_progress, value, message)

    def event(self, type: str, **data: Any) -> None:
        """Emit an event of ``type`` for this task (an ``EventType`` such as ``EventType.LLM_USAGE``, or a type of
        the agent's own, which is stored and shown as it is). Safe from any thread."""
        if _in_loop(self.loop):
            self.emit_event(type, data)
        else:
            self.loop.call_soon_threadsafe(self.emit_event, type, data)

    def metric(self, name: str, value: float) -> None:
        """Record a metric sample labelled with this task's agent and workflow. Safe from any thread."""
        if _in_loop(self.loop):
            self.record_metric(name, value)
        else:
            self.loop.call_soon_threadsafe(self.record_metric, name, value)

    async def remember(
        self,
        content: str,
        memory_type: str = "long_term",
        metadata: dict[str, Any] | None = None,
        *,
        graph_step: int | None = None,
        expires_in: timedelta | None = None,
    ) -> Memory:
        """Remember ``content`` (secrets scrubbed) as this task's agent, with this task, attempt and the workflow's
        newest checkpoint as its provenance; a ``memory.written`` event tells the dashboard."""
        if self.remember_memory is None:
            raise EngineError("this task has no memory to write to")
        if graph_step is None and self.graph is not None:
            graph_step = _graph_step()
        return await self.remember_memory(self.scrub(content), memory_type, metadata or {}, graph_step, expires_in)

    async def search_memory(
        self, query: str, k: int = 5, *, agent: str | None = None, memory_type: str | None = None, **filters: Any
    ) -> list[MemoryHit]:
        """The ``k`` memories nearest in meaning to ``query`` (any agent's unless ``agent`` is given)."""
        if self.search_memories is None:
            raise EngineError("this task has no memory to search")
        return await self.search_memories(query, k, agent=agent, memory_type=memory_type, **filters)

    def remember_sync(self, content: str, memory_type: str = "long_term", **kwargs: Any) -> Memory:
        """``remember`` from a synchronous agent's thread: blocks until the memory is stored."""
        future = asyncio.run_coroutine_threadsafe(self.remember(content, memory_type, **kwargs), self.loop)
        return future.result()

    def search_memory_sync(self, query: str, k: int = 5, **kwargs: Any) -> list[MemoryHit]:
        """``search_memory`` from a synchronous agent's thread."""
        return asyncio.run_coroutine_threadsafe(self.search_memory(query, k, **kwargs), self.loop).result()

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in self.redact:
            if secret:
                text = text.replace(secret, "***")
        return text

    async def watched(self) -> None:
        """Wait until the workflow's watchpoints have seen what this task did so far (immediate when none is
        armed): a condition it met then pauses the workflow before the task's next step, not during it. Graph and
        LLM agents wait here after each graph step and before each ``run_command``."""
        await self.watch_seen()

    async def step(self) -> None:
        """A step boundary: waits here while the workflow is paused, and while this task's output is still being
        stored (an agent logging faster than the database stores holds here instead of filling memory)."""
        await self.gate.wait()
        backlog = self.output_backlog()
        if backlog is not None:
            await backlog

    def step_sync(self) -> None:
        """A step boundary for synchronous agents running in a thread: blocks while paused or while its output is
        being stored, raises if cancelled."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task.id} was cancelled")
        while not self.gate.is_set():
            if self.cancelled.wait(0.05):
                raise TaskCancelled(f"task {self.task.id} was cancelled")
        if not _in_loop(self.loop):
            while self.output_backlogged():
                if self.cancelled.wait(0.01):
                    raise TaskCancelled(f"task {self.task.id} was cancelled")


def _graph_step() -> int | None:
    """The LangGraph step running now, when called from inside a graph node (else None)."""
    from langgraph.config import get_config  # a graph task has LangGraph loaded already

    try:
        step = (get_config().get("metadata") or {}).get("langgraph_step")
    except RuntimeError:  # not inside a runnable
        return None
    return step if isinstance(step, int) else None


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Agent(ABC):
    """One agent of a workflow; ``run`` is called once per attempt of each of its tasks."""

    kind: ClassVar[str]

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    @abstractmethod
    async def run(self, ctx: TaskContext) -> Any:
        """Do the task; return its output (JSON-serialisable). Raise ``TaskFailed`` to fail this attempt."""
