"""What a running graph shows: its stream (``tasks``, ``updates``, ``custom``, ``messages``, ``checkpoints``
modes) turned into pane lines, ``node.*`` events and ``graph_node`` rows."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

from db.models import NODE_END_EVENTS, EventType, GraphNode
from engine.agents.base import TaskContext
from engine.graph.support import GraphSupport

_LINE = 240  # longest pane line a node update is shortened to
_TOKEN_FLUSH_S = 0.25  # a partial line of streamed tokens is shown after this long


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: LangChain messages become ``{"type", "content"}``, models are dumped."""
    if depth > 20:
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    message_type = getattr(value, "type", None)
    if isinstance(message_type, str) and hasattr(value, "content"):  # a LangChain message
        out: dict[str, Any] = {"type": message_type, "content": jsonable(value.content, depth + 1)}
        calls = getattr(value, "tool_calls", None)
        if calls:
            out["tool_calls"] = jsonable(calls, depth + 1)
        return out
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), depth + 1)
    return repr(value)


def short(value: Any, limit: int = _LINE) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StreamPrinter:
    """One graph run's stream → pane, events and node rows."""

    def __init__(self, ctx: TaskContext, support: GraphSupport) -> None:
        self.ctx = ctx
        self.support = support
        self.step = 0
        self.open: dict[str, GraphNode] = {}
        self._tokens = ""
        self._tokens_since = 0.0

    async def handle(self, mode: str, chunk: Any) -> None:
        if mode == "tasks":
            await self._task(chunk)
        elif mode == "checkpoints":
            metadata = chunk.get("metadata") or {}
            self.step = int(metadata.get("step", self.step))
        elif mode == "updates":
            for node, update in (chunk or {}).items():
                if not node.startswith("__") and update is not None:
                    self.ctx.log(f"  {node} → {short(update)}", "graph")
        elif mode == "custom":
            self._custom(chunk)
        elif mode == "messages":
            message, _metadata = chunk
            self._token(message)

    async def _task(self, chunk: dict[str, Any]) -> None:
        name = str(chunk.get("name", ""))
        if name.startswith("__"):
            return
        run = str(chunk.get("id"))
        if "input" in chunk:  # started
            self.flush()
            node = GraphNode(
                id=f"{self.ctx.workflow}/{self.ctx.task.id}/{run}",
                workflow=self.ctx.workflow,
                task=self.ctx.task.id,
                thread=self.support.thread,
                node=name,
                step=self.step + 1,
            )
            self.open[run] = node
            await self.support.nodes.put(node)
            self.ctx.event(EventType.NODE_STARTED, node=name, step=node.step, thread=self.support.thread)
            self.ctx.log(f"▶ {name} (step {node.step})", "graph")
            return
        if run not in self.open:
            return
        node = self.open.pop(run)
        self.flush()
        error = chunk.get("error")
        if chunk.get("interrupts"):
            status = "interrupted"
        elif error:
            status = "failed"
        else:
            status = "completed"
        await self._close(node, status, None if error is None else str(error))
        # The graph's next step starts only once this returns: a watchpoint met by what the node did (its model
        # call's cost, its node.completed) pauses the graph at this step boundary, not a step later.
        await self.ctx.watched()

    async def _close(self, node: GraphNode, status: str, error: str | None = None) -> None:
        done = node.model_copy(update={"status": status, "error": error, "finished_at": datetime.now(UTC)})
        await self.support.nodes.put(done)
        self.ctx.event(NODE_END_EVENTS[status], node=node.node, step=node.step, thread=node.thread, error=error)
        if status not in ("completed", "interrupted"):  # an interrupt is followed by its approval line
            self.ctx.log(f"{'✗' if status == 'failed' else '·'} {node.node} {status}{f': {error}' if error else ''}")

    async def close_open(self, status: str, error: str | None = None) -> None:
        """Mark nodes that were running when the run stopped (cancel, drain, failure)."""
        self.flush()
        for node in list(self.open.values()):
            if status == "running":  # drained: the step finished, so its nodes did
                await self._close(node, "completed")
            else:
                await self._close(node, status, error)
        self.open.clear()

    def _custom(self, chunk: Any) -> None:
        if isinstance(chunk, dict):
            if "progress" in chunk:
                self.ctx.progress(float(chunk["progress"]), str(chunk.get("message", "")))
                return
            for key in ("message", "msg", "line", "text"):
                if isinstance(chunk.get(key), str):
                    self.ctx.log(chunk[key])
                    return
        self.ctx.log(short(chunk))

    def _token(self, message: Any) -> None:
        if getattr(message, "type", None) not in ("ai", "AIMessageChunk"):
            return  # tool results and echoed inputs are not the model speaking
        content = getattr(message, "content", "")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str) or not content:
            return
        if not self._tokens:
            self._tokens_since = time.monotonic()
        self._tokens += content
        *lines, self._tokens = self._tokens.split("\n")
        for line in lines:
            self.ctx.log(line, "llm")
        if self._tokens and time.monotonic() - self._tokens_since > _TOKEN_FLUSH_S and len(self._tokens) > 60:
            self.ctx.log(self._tokens, "llm")  # a long line still being written: show what has come so far
            self._tokens = ""

    def flush(self) -> None:
        """Show the rest of a streamed message."""
        if self._tokens:
            self.ctx.log(self._tokens, "llm")
            self._tokens = ""
