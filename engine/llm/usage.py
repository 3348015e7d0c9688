"""Token usage and cost of an LLM agent's calls: recorded as each call ends, and summed for the task's output.

``UsageRecorder`` is a LangChain callback handler added to the agent's run. For each model call it reads the
result's ``usage_metadata`` and emits an ``llm.usage`` event (the dashboard sums these per task, workflow and
agent) and the metric samples ``llm_input_tokens``, ``llm_output_tokens`` and ``llm_cost_usd``. A model with
no price still has its tokens counted; its cost is ``None`` and the pane says so once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from db.models import EventType
from engine.agents.base import TaskContext
from engine.llm.pricing import Price

COST_DIGITS = 10  # USD to 1e-10: exact enough to sum, short enough to read


@dataclass(frozen=True)
class CallUsage:
    """The tokens of one model call (``input_tokens`` includes the cached ones, as LangChain counts them)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> CallUsage | None:
        """From a message's ``usage_metadata``; ``None`` when the provider reported none."""
        if not metadata:
            return None
        details = metadata.get("input_token_details") or {}
        input_tokens = int(metadata.get("input_tokens") or 0)
        output_tokens = int(metadata.get("output_tokens") or 0)
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=int(metadata.get("total_tokens") or input_tokens + output_tokens),
            cache_read_tokens=int(details.get("cache_read") or 0),
            cache_write_tokens=int(details.get("cache_creation") or 0),
        )

    def cost(self, price: Price | None) -> float | None:
        """USD at ``price``; ``None`` without one."""
        if price is None:
            return None
        usd = price.cost(self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens)
        return round(usd, COST_DIGITS)


@dataclass
class UsageSummary:
    """Calls, tokens and cost summed over a run; ``cost_usd`` is ``None`` when any call had no price."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0

    def add(self, call: CallUsage, cost: float | None) -> None:
        self.calls += 1
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.total_tokens += call.total_tokens
        self.cache_read_tokens += call.cache_read_tokens
        self.cache_write_tokens += call.cache_write_tokens
        self.cost_usd = None if cost is None or self.cost_usd is None else round(self.cost_usd + cost, COST_DIGITS)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_of_messages(messages: Iterable[BaseMessage], price: Price | None) -> UsageSummary:
    """The usage of every model reply in a conversation (what the task's output reports).

    Summed from the replies kept in the graph's state rather than from this attempt's callbacks, so a run resumed
    from a checkpoint still reports the calls made before it stopped.
    """
    summary = UsageSummary(cost_usd=None if price is None else 0.0)
    for message in messages:
        if isinstance(message, AIMessage):
            call = CallUsage.from_metadata(message.usage_metadata)
            if call is not None:
                summary.add(call, call.cost(price))
    return summary


class UsageRecorder(AsyncCallbackHandler):
    """Emits ``llm.usage`` and the token and cost metrics for every model call of one task attempt."""

    def __init__(self, ctx: TaskContext, model: str, price: Price | None) -> None:
        self.ctx = ctx
        self.model = model
        self.price = price
        self.summary = UsageSummary(cost_usd=None if price is None else 0.0)
        self._said_no_price = False
        self._said_no_usage = False

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        for generations in response.generations:
            for generation in generations:
                message = generation.message if isinstance(generation, ChatGeneration) else None
                metadata = message.usage_metadata if isinstance(message, AIMessage) else None
                call = CallUsage.from_metadata(metadata)
                if call is not None:
                    self.record(call)
                elif not self._said_no_usage:
                    self._said_no_usage = True
                    self.ctx.log(f"model {self.model} reported no token usage for a call; it is not counted", "stderr")

    def record(self, call: CallUsage) -> None:
        """One call's usage: an ``llm.usage`` event, metric samples, and the running summary."""
        cost = call.cost(self.price)
        self.summary.add(call, cost)
        self.ctx.event(
            EventType.LLM_USAGE,
            model=self.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            total_tokens=call.total_tokens,
            cache_read_tokens=call.cache_read_tokens,
            cache_write_tokens=call.cache_write_tokens,
            cost_usd=cost,
        )
        self.ctx.metric("llm_input_tokens", call.input_tokens)
        self.ctx.metric("llm_output_tokens", call.output_tokens)
        if cost is not None:
            self.ctx.metric("llm_cost_usd", cost)
        elif not self._said_no_price:
            self._said_no_price = True
            self.ctx.log(
                f"no price for model {self.model}: tokens are counted, cost is not "
                "(set options.price or AGENTDECK_PRICES)",
                "stderr",
            )
