"""A scripted chat model for the ``llm`` agent tests: the one boundary they fake is the LLM provider."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from engine.llm import register_chat_model


class FakeToolCallingChatModel(FakeMessagesListChatModel):
    """A fake standing in for an LLM provider (the only boundary these tests may fake).

    It answers each call with the next scripted ``AIMessage`` (tool calls included), each carrying the
    ``usage_metadata`` a provider would report, accepts ``bind_tools`` as tool-calling models do, and keeps every
    conversation it was sent so a test can check what came back from the tools. Everything around it is real:
    LangGraph, the tools, the sandbox's processes and SurrealDB.
    """

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[str] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> FakeToolCallingChatModel:
        self.bound_tools = [getattr(tool, "name", str(tool)) for tool in tools]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, stop, run_manager, **kwargs)


def reply(
    content: str = "",
    *,
    tool: tuple[str, dict[str, Any]] | None = None,
    tokens: tuple[int, int],
    cache_read: int = 0,
    call_id: str | None = None,
) -> AIMessage:
    """A scripted model reply: text and/or one tool call, with the token counts a provider would report."""
    usage: dict[str, Any] = {"input_tokens": tokens[0], "output_tokens": tokens[1], "total_tokens": sum(tokens)}
    if cache_read:
        usage["input_token_details"] = {"cache_read": cache_read}
    calls = []
    if tool is not None:
        calls = [{"name": tool[0], "args": tool[1], "id": call_id or f"call-{tool[0]}", "type": "tool_call"}]
    return AIMessage(content=content, tool_calls=calls, usage_metadata=usage)


def script(model_name: str, replies: Sequence[BaseMessage]) -> tuple[FakeToolCallingChatModel, Callable[[], None]]:
    """A fake model answering with ``replies``, registered under ``model_name``; returns it and its unregister."""
    model = FakeToolCallingChatModel(responses=list(replies))
    return model, register_chat_model(model_name, lambda **options: model)
