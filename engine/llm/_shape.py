"""The model an ``llm`` agent's graph is built with for time travel only: never called, needs no provider.

Reading a task's checkpoint history and forking its thread need the graph's shape (its nodes and state), not
its model, so they must not need the provider's package settings or API key either.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult


class ShapeOnlyChatModel(BaseChatModel):
    """Stands in for the agent's model in a graph that only reads and forks checkpoints."""

    model: str

    @property
    def _llm_type(self) -> str:
        return "agentdeck-shape-only"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError(f"this graph of {self.model} was built to read its checkpoints, not to run")
