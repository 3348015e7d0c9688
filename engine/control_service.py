"""The operations other processes may ask of an engine: the CLI's controls and listings, and what an attached
dashboard needs besides (read-only queries, the event stream, change streams of the tree's tables).

``ControlService`` is transport-free: the Unix socket (``engine.control_socket``) and control requests on a server
database (``engine.control_db``) both call it. Results are JSON-ready.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncGenerator
from typing import Any

from db._commits import reads_only
from db.connection import decode_frame, redact_url
from db.models import Workflow
from db.watch import watcher_for
from engine.embeddings import EmbedderError
from engine.engine import Engine
from engine.engine_controls import lease_expired
from engine.errors import ControlError
from engine.memory import MemoryInputError

__all__ = ["ControlRefused", "ControlService"]


class ControlRefused(ControlError):
    """The engine refused the client itself (no or wrong token, or a sandboxed caller), not just the operation."""


class ControlService:
    """The operations the CLI and the socket offer, over one engine. Results are JSON-ready.

    ``STREAMS`` are the operations that answer with a stream of items (``stream``) instead of one result.
    """

    STREAMS: tuple[str, ...] = ("events", "watch")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def stream(self, op: str, args: dict[str, Any]) -> AsyncGenerator[Any, None]:
        if op == "events":
            return self._events()
        if op == "watch":
            return self._watch(list(args.get("tables") or []), args.get("since"))
        raise ControlError(f"unknown stream {op!r}")

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ControlError(f"unknown control operation {op!r}")
        return await handler(**args)

    def _resumable(self, workflow: Workflow) -> bool:
        return workflow.id not in self.engine.runs and lease_expired(workflow, self.engine.db.is_embedded)

    async def op_list(self) -> list[dict[str, Any]]:
        workflows = await self.engine.stores.workflows.list()
        out = []
        for workflow in workflows:
            row = workflow.model_dump(mode="json", exclude={"spec"})
            row["resumable"] = self._resumable(workflow)
            out.append(row)
        return out

    async def op_show(self, workflow: str) -> dict[str, Any]:
        found = await self.engine.stores.workflows.get(workflow)
        if found is None:
            raise ControlError(f"no workflow {workflow!r}")
        tasks = await self.engine.stores.tasks.list(workflow)
        order = {t["id"]: i for i, t in enumerate(found.spec.get("tasks", []))}
        tasks.sort(key=lambda t: order.get(t.key, len(order)))
        row = found.model_dump(mode="json", exclude={"spec"})
        row["tasks"] = [t.model_dump(mode="json") for t in tasks]
        row["resumable"] = self._resumable(found)
        return row

    async def op_checkpoints(self, workflow: str) -> list[dict[str, Any]]:
        if await self.engine.stores.workflows.get(workflow) is None:
            raise ControlError(f"no workflow {workflow!r}")
        return [c.model_dump(mode="json") for c in await self.engine.stores.checkpoints.list(workflow)]

    async def op_pause(self, workflow: str) -> str:
        await self.engine.pause(workflow)
        return f"paused {workflow}"

    async def op_resume(self, workflow: str) -> str:
        await self.engine.resume(workflow)
        return f"resumed {workflow}"

    async def op_cancel(self, workflow: str) -> str:
        await self.engine.cancel(workflow)
        return f"cancelled {workflow}"

    async def op_retry(self, workflow: str, task: str) -> str:
        await self.engine.retry(workflow, task)
        return f"retrying {task} of {workflow}"

    async def op_rollback(self, workflow: str, checkpoint: str) -> str:
        target = await self.engine.rollback(workflow, checkpoint)
        return f"rolled {workflow} back to checkpoint #{target.number} ({target.id})"

    async def op_approve(self, workflow: str, task: str, value: Any = True, deny: bool = False) -> str:
        approval = await self.engine.approve(workflow, task, value, deny=deny, by=f"cli@{socket.gethostname()}")
        return f"{approval.status.value} {task} of {workflow}: {json.dumps(approval.value)}"

    async def op_history(self, workflow: str, task: str) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in await self.engine.graph_history(workflow, task)]

    async def op_fork(
        self,
        workflow: str,
        task: str,
        checkpoint: str,
        values: dict[str, Any] | None = None,
        downstream: bool = True,
    ) -> str:
        head = await self.engine.fork_graph(workflow, task, checkpoint, values, downstream=downstream)
        after = "" if downstream else " (the completed tasks after it keep their outputs)"
        return f"forked {task} of {workflow} at {checkpoint}; running from {head}{after}"

    async def op_memory_add(
        self, agent: str, content: str, memory_type: str = "long_term", metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            memory = await self.engine.memory.remember(agent, content, memory_type, metadata)
        except (MemoryInputError, EmbedderError) as exc:
            raise ControlError(str(exc)) from exc
        return memory.model_dump(mode="json", exclude={"embedding"})

    async def op_memory_search(
        self, query: str, k: int = 5, agent: str | None = None, memory_type: str | None = None
    ) -> list[dict[str, Any]]:
        try:
            hits = await self.engine.memory.search(query, k, agent=agent, memory_type=memory_type)
        except (MemoryInputError, EmbedderError) as exc:
            raise ControlError(str(exc)) from exc
        return [
            {"score": round(hit.score, 4), **hit.memory.model_dump(mode="json", exclude={"embedding"})} for hit in hits
        ]

    # ---- for an attached dashboard (engine.attached) --------------------------------------------------------

    async def op_hello(self) -> dict[str, Any]:
        """Who serves: the attached dashboard shows it, and takes the owner's id as its engine's."""
        db = self.engine.db
        return {"owner": self.engine.owner, "pid": os.getpid(), "db": redact_url(db.url), "kind": db.kind}

    async def op_runs(self) -> dict[str, bool]:
        """The workflows this engine runs now, and whether each is paused."""
        return {workflow: bool(self.engine.is_paused(workflow)) for workflow in list(self.engine.runs)}

    async def op_query(self, frame: str) -> str:
        """Run a query an attached dashboard encoded (base64 of the embedded engine's CBOR frame) and return the
        engine's reply as it came (base64), so every SurrealDB type arrives as it would in-process.

        Reads only: the engine stays the one writer of its state, and a dashboard changes it through the controls.
        (A guard against mistakes, not a security boundary: whoever holds the token may control every workflow.)
        """
        raw = base64.b64decode(frame)
        request = decode_frame(raw)
        params = request.get("params") if isinstance(request, dict) else None
        sql = params[0] if isinstance(params, list) and params and isinstance(params[0], str) else None
        if sql is None or request.get("method") != "query":
            raise ControlError("not a query frame")
        if not reads_only(sql):
            raise ControlError(f"an attached client only reads; refused: {sql.strip().splitlines()[0][:120]}")
        return base64.b64encode(await self.engine.db.execute_frame(sql, raw)).decode()

    async def op_approve_row(
        self, workflow: str, task: str, value: Any = True, deny: bool = False, by: str = "dashboard"
    ) -> Any:
        approval = await self.engine.approve(workflow, task, value, deny=deny, by=f"{by} (attached)")
        return approval.model_dump(mode="json")

    async def op_rollback_row(self, workflow: str, checkpoint: str) -> Any:
        return (await self.engine.rollback(workflow, checkpoint)).model_dump(mode="json")

    async def op_retry_task(self, workflow: str, task: str, fresh: bool = True) -> None:
        await self.engine.retry(workflow, task, fresh=fresh)

    async def op_fork_head(
        self,
        workflow: str,
        task: str,
        checkpoint: str,
        values: dict[str, Any] | None = None,
        downstream: bool = True,
    ) -> str:
        return await self.engine.fork_graph(workflow, task, checkpoint, values, downstream=downstream)

    async def op_diverge_id(self, workflow: str, at_seq: int, values: dict[str, Any] | None = None) -> str:
        return await self.engine.diverge(workflow, at_seq, values)

    # ---- watchpoints (engine.watch) ---------------------------------------------------------------------------

    async def op_watch_add(self, workflow: str, when: str, task: str | None = None, name: str | None = None) -> str:
        """Add a watchpoint; answers its id (the command line prints it)."""
        return (await self.engine.add_watchpoint(workflow, when, task, name=name)).id

    async def op_watch_add_row(
        self, workflow: str, when: str, task: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        return (await self.engine.add_watchpoint(workflow, when, task, name=name)).model_dump(mode="json")

    async def op_watch_remove(self, workflow: str, watchpoint: str) -> str:
        await self.engine.remove_watchpoint(workflow, watchpoint)
        return f"removed watchpoint {watchpoint} of {workflow}"

    async def op_watch_list(self, workflow: str) -> list[dict[str, Any]]:
        return [w.model_dump(mode="json") for w in await self.engine.watchpoints(workflow)]

    async def _events(self) -> AsyncGenerator[Any, None]:
        """Every event this engine publishes from now on, as JSON; gaps are refilled from the event table by the
        subscription, so a slow client costs the engine nothing."""
        async with self.engine.bus.subscribe() as events:
            async for event in events:
                yield event.model_dump(mode="json")

    async def _watch(self, tables: list[str], since: Any) -> AsyncGenerator[Any, None]:
        """The committed changes to ``tables`` from ``since``, watched here, where every commit is seen."""
        position = int(since) if since is not None else None
        async with contextlib.aclosing(watcher_for(self.engine.db).watch_many(tables, since=position)) as changes:
            async for change in changes:
                record = change.record.model_dump(mode="json") if change.record is not None else None
                yield {"table": change.table, "action": change.action, "id": change.id, "record": record,
                       "position": change.position}  # fmt: skip
