"""The ``llm`` agent: a ready-made tool-calling LangGraph agent over any ``provider:model`` chat model.

It is a ``graph`` agent whose graph is LangChain's ``create_agent`` (a model ↔ tools loop compiled as a LangGraph
graph), so it gets everything graph agents get: its thread is checkpointed in our SurrealDB, pause stops it at
a step boundary, cancel stops it at once, resume continues the conversation where it was, and replies stream
into the pane token by token.

Options (``agents: {writer: {kind: llm, model: ..., options: {...}}}``):

- ``system``: the system prompt (default: ``DEFAULT_SYSTEM``);
- ``tools``: which of ``run_command``, ``read_file``, ``write_file``, ``search_memory``, ``remember`` it may call
  (default: all; ``[]`` for none);
- ``model_options``: keyword arguments for the chat model (``temperature``, ``max_tokens``, ``base_url``, ...);
- ``price``: ``{input: X, output: Y}`` USD per million tokens, over the shipped table (``engine.llm.pricing``);
- ``command_timeout``: seconds one ``run_command`` may take (default 300).

The task's ``input.prompt`` is the user message (other input keys and upstream outputs are appended); without
a prompt the whole input is. The output is ``{"answer": ..., "model": ..., "usage": {...tokens, cost_usd}}``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from engine.agents.base import TaskContext
from engine.errors import AgentUnavailable, TaskFailed
from engine.graph.agent import GraphAgent
from engine.llm.models import check_model_available, configured_model, make_chat_model
from engine.llm.pricing import PriceError, price_for
from engine.llm.tools import DEFAULT_COMMAND_TIMEOUT_S, TOOL_NAMES, make_tools
from engine.spec import AgentSpec

# LangChain is imported when a task runs, not when the agent is built, so `agentdeck validate` stays quick.

DEFAULT_SYSTEM = (
    "You are an agent in an agentdeck workflow. You work in your own working directory inside a sandbox: use "
    "the tools to run commands and to read and write files there, check your work by running it, search "
    "memory for what earlier tasks learned and remember what later ones should know, and keep "
    "going until the task is done. Then reply with a short, plain summary of the result: that reply is your "
    "task's output, which later tasks read."
)
UPSTREAM_CHARS = 2_000  # of each upstream task's output put in the prompt


class LlmAgent(GraphAgent):
    kind: ClassVar[str] = "llm"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        options = spec.options
        self.model = configured_model(spec.model)
        check_model_available(self.model)
        self.system = _option(options, "system", str, DEFAULT_SYSTEM)
        self.model_options: dict[str, Any] = _option(options, "model_options", dict, {})
        self.tool_names: list[str] = _option(options, "tools", list, list(TOOL_NAMES))
        unknown = [name for name in self.tool_names if name not in TOOL_NAMES]
        if unknown:
            raise AgentUnavailable(f"options.tools: unknown tool {unknown[0]!r} (available: {', '.join(TOOL_NAMES)})")
        timeout = options.get("command_timeout", DEFAULT_COMMAND_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise AgentUnavailable(f"options.command_timeout must be a number of seconds above zero, got {timeout!r}")
        self.command_timeout = float(timeout)
        try:
            self.price = price_for(self.model, options.get("price"))
        except PriceError as exc:
            raise AgentUnavailable(str(exc)) from exc

    async def build_graph(self, ctx: TaskContext | None) -> Any:
        from langchain.agents import create_agent

        if ctx is None:  # time travel (history, forks): the graph's shape without its provider
            from engine.llm._shape import ShapeOnlyChatModel

            chat_model: Any = ShapeOnlyChatModel(model=self.model)
        else:
            try:
                chat_model = make_chat_model(self.model, dict(self.model_options))
            except Exception as exc:  # a missing API key, a bad model option: the provider's own words
                raise TaskFailed(f"cannot create chat model {self.model!r}: {type(exc).__name__}: {exc}") from exc
        tools = make_tools(ctx, self.tool_names, self.command_timeout)
        return create_agent(chat_model, tools, system_prompt=self.system, name=self.spec.name)

    def graph_input(self, ctx: TaskContext) -> Any:
        from langchain_core.messages import HumanMessage

        return {"messages": [HumanMessage(content=user_message(ctx))]}

    def callbacks(self, ctx: TaskContext) -> list[Any]:
        from engine.llm.usage import UsageRecorder

        return [*super().callbacks(ctx), UsageRecorder(ctx, self.model, self.price)]

    def task_output(self, ctx: TaskContext, values: Any) -> Any:
        from langchain_core.messages import AIMessage

        from engine.llm.usage import usage_of_messages

        messages = list(values.get("messages", [])) if isinstance(values, dict) else []
        replies = [message for message in messages if isinstance(message, AIMessage)]
        answer = replies[-1].text if replies else ""
        usage = usage_of_messages(messages, self.price)
        return {"answer": answer, "model": self.model, "usage": usage.as_dict()}


def user_message(ctx: TaskContext) -> str:
    """The first message of the conversation: the task's prompt (or input), then upstream outputs in brief."""
    prompt = ctx.input.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        text = prompt.strip()
        rest = {key: value for key, value in ctx.input.items() if key != "prompt"}
        if rest:
            text += "\n\nTask input:\n" + _as_text(rest)
    elif ctx.input:
        text = f"Do task {ctx.task.id!r} with this input:\n" + _as_text(ctx.input)
    else:
        raise TaskFailed(f"llm task {ctx.task.id!r} has no input: give it one, e.g. input: {{prompt: ...}}")
    if ctx.upstream:
        lines = ["", "", "Results of the tasks this one depends on:"]
        for task, output in ctx.upstream.items():
            lines.append(f"- {task}: {_summary(output)}")
        if ctx.upstream_workdirs:
            lines.append("Their working directories (readable with run_command): ")
            lines.extend(f"- {path}" for path in ctx.upstream_workdirs)
        text += "\n".join(lines)
    return ctx.scrub(text)


def _summary(output: Any) -> str:
    if isinstance(output, dict) and isinstance(output.get("answer"), str):  # an upstream llm task: its answer
        output = output["answer"]
    text = output if isinstance(output, str) else _as_text(output)
    return text if len(text) <= UPSTREAM_CHARS else text[:UPSTREAM_CHARS] + " […]"


def _as_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _option(options: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = options.get(key, default)
    if not isinstance(value, kind):
        raise AgentUnavailable(f"options.{key} must be a {kind.__name__}, got {value!r}")
    return value
