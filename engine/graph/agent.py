"""The ``graph`` agent: runs a compiled LangGraph graph as a task, on a thread checkpointed in our SurrealDB.

``graph: "module:attr"`` names a compiled graph, or a factory returning one (called with the task's context
when it takes a parameter). Our checkpointer replaces the graph's own, and the task's thread id is bound in the
config, so:

- a **fresh** run starts the graph with the task's input (``input`` plus ``upstream`` outputs when the graph's
  state has an ``upstream`` key); a run whose thread already has checkpoints **continues from the thread's
  head** (after a crash, a cancel or a pause), so nodes that finished never run again;
- **pause** asks LangGraph to drain (``RunControl.request_drain``): the running step finishes, the graph stops at
  the step boundary, and resume continues from that checkpoint;
- **cancel** stops the running node at once (asyncio cancellation); resume re-runs only that node;
- ``interrupt()`` in a node opens an approval (``engine.graph.approvals``) and the answer resumes the graph with
  ``Command(resume=...)``.

Node executions stream into the pane (``updates``, ``custom`` and ``messages`` modes) and are rows in
``graph_node`` that the dashboard's tree shows under the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
from typing import Any, ClassVar

from engine.agents.base import Agent, TaskContext
from engine.agents.python import import_object
from engine.errors import AgentUnavailable, TaskFailed
from engine.graph.stream import StreamPrinter, jsonable
from engine.graph.support import GraphSupport, thread_finished
from engine.spec import AgentSpec

STREAM_MODES = ["updates", "custom", "messages", "tasks", "checkpoints"]


def is_compiled_graph(value: Any) -> bool:
    from langgraph.pregel import Pregel

    return isinstance(value, Pregel)


class GraphAgent(Agent):
    kind: ClassVar[str] = "graph"
    uses_graph: ClassVar[bool] = True

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        self._target: Any = None
        if type(self) is GraphAgent:
            if not spec.graph:
                raise AgentUnavailable(f"agent {spec.name!r} of kind graph needs 'graph: module:attribute'")
            self._target = _import_graph(spec.graph)

    # ---- hooks for subclasses (the llm agent) -------------------------------------------------------------

    async def build_graph(self, ctx: TaskContext | None) -> Any:
        """The compiled graph to run (its own checkpointer, if any, is replaced by ours)."""
        target = self._target
        if is_compiled_graph(target):
            return target
        takes_context = bool(inspect.signature(target).parameters)
        graph = target(ctx) if takes_context else target()
        if inspect.isawaitable(graph):
            graph = await graph
        if not is_compiled_graph(graph):
            raise TaskFailed(f"{self.spec.graph} returned {type(graph).__name__}, not a compiled LangGraph graph")
        return graph

    def graph_input(self, ctx: TaskContext) -> Any:
        """The input of a fresh run."""
        return dict(ctx.input)

    def callbacks(self, ctx: TaskContext) -> list[Any]:
        """LangChain callback handlers for the run: tool calls become ``tool.called`` events (the llm agent adds
        one that counts tokens)."""
        from engine.graph.tool_calls import ToolCallRecorder

        return [ToolCallRecorder(ctx)]

    def task_output(self, ctx: TaskContext, values: Any) -> Any:
        """The task's output from the graph's final state."""
        return jsonable(values)

    # ---- running ------------------------------------------------------------------------------------------

    async def compiled(self, ctx: TaskContext | None, saver: Any) -> Any:
        """The graph with our checkpointer."""
        graph = await self.build_graph(ctx)
        return graph.copy(update={"checkpointer": saver})

    @property
    def _durability(self) -> Any:
        # "sync": each step's checkpoint is stored before the next step starts, so a cancel or a crash never
        # loses a finished node (LangGraph's default, "async", may still be writing it).
        return self.spec.options.get("durability", "sync")

    async def run(self, ctx: TaskContext) -> Any:
        support: GraphSupport | None = ctx.graph
        if support is None:
            raise TaskFailed("graph agents need the engine's graph support (run them through the engine)")
        graph = await self.compiled(ctx, support.saver)
        config: dict[str, Any] = {
            # Nodes can read these from their ``config`` argument (the task's working directory, for one).
            "configurable": {
                "thread_id": support.thread,
                "workdir": str(ctx.workdir),
                "workflow": ctx.workflow,
                "task": ctx.task.id,
            },
            "callbacks": self.callbacks(ctx),
            "recursion_limit": int(self.spec.options.get("recursion_limit", 50)),
        }
        state = await graph.aget_state(config)
        if state.created_at is None:
            next_input: Any = self._fresh_input(ctx, graph)
            ctx.log(f"▶ graph {self.spec.graph or self.kind} on thread {support.thread}", "graph")
        elif thread_finished(state):
            ctx.log(f"thread {support.thread} already finished; its final state is the output", "graph")
            return self.task_output(ctx, state.values)
        else:
            next_input = None
            # An empty ``next`` with tasks left: a step finished but the checkpoint after it was never stored.
            where = ", ".join(state.next) or (
                "interrupt" if state.interrupts else "the step after " + ", ".join(t.name for t in state.tasks)
            )
            ctx.log(f"↻ continuing thread {support.thread} at {where} (finished nodes do not run again)", "graph")
        printer = StreamPrinter(ctx, support)
        at_breakpoint = False
        while True:
            if state.interrupts:
                next_input = await self._answer_interrupts(ctx, support, state)
            elif at_breakpoint:
                await self._pass_breakpoint(ctx, support, state)
            control = _run_control()
            support.pause_listeners.append(functools.partial(control.request_drain, "paused"))
            if not ctx.gate.is_set():
                control.request_drain("paused")
            try:
                # aclosing: a cancel that lands while we handle a chunk (not inside LangGraph) must still close
                # the stream, or LangGraph's node tasks would run on, unowned — "cancel doesn't stop the graph".
                stream = graph.astream(
                    next_input, config, stream_mode=STREAM_MODES, control=control, durability=self._durability
                )
                async with contextlib.aclosing(stream):
                    async for mode, chunk in stream:
                        await printer.handle(mode, chunk)
            except asyncio.CancelledError:
                await printer.close_open("cancelled")
                raise
            except Exception as exc:
                if type(exc).__name__ != "GraphDrained":
                    await printer.close_open("failed", error=f"{type(exc).__name__}: {exc}")
                    raise TaskFailed(f"graph failed: {type(exc).__name__}: {exc}") from exc
                await printer.close_open("running")
                ctx.log("⏸ paused at a step boundary; resume continues from the checkpoint", "graph")
                await ctx.step()
                next_input, at_breakpoint = None, False
                state = await graph.aget_state(config)
                continue
            finally:
                support.pause_listeners.clear()
            printer.flush()
            state = await graph.aget_state(config)
            next_input = None
            if thread_finished(state):
                return self.task_output(ctx, state.values)
            # Stopped with work left and no interrupt() call: a static breakpoint (interrupt_before/after).
            at_breakpoint = not state.interrupts

    def _fresh_input(self, ctx: TaskContext, graph: Any) -> Any:
        value = self.graph_input(ctx)
        if isinstance(value, dict) and ctx.upstream and "upstream" not in value:
            channels = getattr(graph, "channels", {}) or {}
            if "upstream" in channels:
                value["upstream"] = ctx.upstream
        return value

    async def _answer_interrupts(self, ctx: TaskContext, support: GraphSupport, state: Any) -> Any:
        from langgraph.types import Command

        nodes = {i.id: t.name for t in state.tasks for i in t.interrupts}
        answers = {}
        for item in state.interrupts:
            answers[item.id] = await self._approval(ctx, support, item.id, jsonable(item.value), nodes.get(item.id))
        if len(answers) == 1:
            return Command(resume=next(iter(answers.values())))
        return Command(resume=answers)

    async def _pass_breakpoint(self, ctx: TaskContext, support: GraphSupport, state: Any) -> None:
        node = ", ".join(state.next)
        prompt = {"question": f"continue past the breakpoint at {node}?"}
        checkpoint = state.config["configurable"]["checkpoint_id"]
        if await self._approval(ctx, support, f"bp-{checkpoint}", prompt, node) is False:
            raise TaskFailed(f"stopped at the breakpoint at {node}: denied")

    async def _approval(
        self, ctx: TaskContext, support: GraphSupport, interrupt_id: str, prompt: Any, node: str | None = None
    ) -> Any:
        from engine.graph.approvals import question_of

        prompt = _scrubbed(ctx, prompt)  # the prompt goes to events and the database: no secret values in it
        ctx.log(f"✋ approval needed{f' in {node}' if node else ''}: {question_of(prompt)}", "graph")
        waited = False

        async def now_waiting() -> None:
            nonlocal waited
            waited = True
            await support.waiting(True)

        try:
            approval = await support.approvals.ask(
                workflow=ctx.workflow,
                task=ctx.task.id,
                agent=ctx.agent.name,
                interrupt_id=interrupt_id,
                prompt=prompt,
                node=node,
                options=self.spec.options,
                on_pending=now_waiting,
            )
        finally:
            if waited:
                await support.waiting(False)
        by = f" (by {approval.answered_by})" if approval.answered_by else ""
        ctx.log(f"✓ {approval.status.value}: {json.dumps(approval.value)}{by}", "graph")
        return approval.value


def _scrubbed(ctx: TaskContext, value: Any) -> Any:
    if isinstance(value, str):
        return ctx.scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(ctx, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(ctx, item) for item in value]
    return value


def _run_control() -> Any:
    from langgraph.runtime import RunControl

    return RunControl()


def _import_graph(path: str) -> Any:
    target = import_object(path)  # a compiled graph is not callable: import it as an object
    if not is_compiled_graph(target) and not callable(target):
        raise AgentUnavailable(f"{path!r} is neither a compiled LangGraph graph nor a factory returning one")
    return target
