"""Tool calls as events: ``tool.called`` {tool, args, call} for every tool a graph task's agent calls.

A LangChain callback handler added to every graph run (the ``llm`` agent's tools and any ``ToolNode`` in a user's
graph): it sees each tool start with its arguments. ``args`` is the arguments as canonical JSON (sorted keys),
secrets redacted and cut to ``ARGS_CHARS``; ``call`` digests the tool's name and its whole arguments, so the same
call made again has the same ``call`` (what the ``tool_repeats`` watchpoint counts).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler

from db.models import EventType
from engine.agents.base import TaskContext
from engine.sandbox._lines import Redactor

ARGS_CHARS = 1_000


def call_digest(tool: str, canonical_args: str) -> str:
    """The same for the same tool called with the same arguments."""
    return hashlib.sha256(f"{tool}\0{canonical_args}".encode()).hexdigest()[:16]


class ToolCallRecorder(AsyncCallbackHandler):
    """Emits ``tool.called`` for each tool call of one task attempt."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        # As output is redacted: each line of a multi-line secret is one too (a key's body line passed alone).
        self._redact = Redactor(ctx.redact)

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        tool = str((serialized or {}).get("name") or kwargs.get("name") or "tool")
        given: Any = inputs if inputs is not None else input_str
        canonical = json.dumps(given, sort_keys=True, ensure_ascii=False, default=str)
        # Redacted before the JSON encoding: a secret holding a newline, quote or backslash is escaped in the JSON
        # text, where searching for the secret itself finds nothing.
        shown = self.ctx.scrub(json.dumps(self._redacted(given), sort_keys=True, ensure_ascii=False, default=str))
        if len(shown) > ARGS_CHARS:
            shown = shown[:ARGS_CHARS] + "…"
        self.ctx.event(EventType.TOOL_CALLED, tool=tool, args=shown, call=call_digest(tool, canonical))

    def _redacted(self, value: Any) -> Any:
        if not self._redact.active:
            return value
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {self._redact(str(key)): self._redacted(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        if value is None or isinstance(value, int | float | bool):
            return value  # a secret that is a number is caught in the JSON text
        return self._redact(str(value))  # what default=str would write
