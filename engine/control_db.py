"""Controls through a server database: there is no shared file to put a socket beside, so the CLI writes a
``control_request`` row and the engine that owns the workflow, which follows that table's change feed, carries it
out with its ``ControlService`` and writes the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from db.models import ControlRequest
from db.watch import watcher_for
from engine.control_ask import ask_owner_via_database
from engine.control_service import ControlService
from engine.errors import ControlError

log = logging.getLogger(__name__)

__all__ = ["DatabaseControlListener", "ask_owner_via_database"]


class DatabaseControlListener:
    """Answers ``control_request`` rows for the workflows this engine runs (server databases)."""

    def __init__(self, service: ControlService) -> None:
        self.service = service
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = watcher_for(self.service.engine.db)
        position = await watcher.position()
        self._task = asyncio.create_task(self._answer(position), name="agentdeck-control-requests")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _answer(self, position: int) -> None:
        engine = self.service.engine
        async for change in watcher_for(engine.db).watch("control_request", since=position):
            request = change.record
            if not isinstance(request, ControlRequest) or request.status != "pending":
                continue
            if request.workflow not in engine.runs:
                continue  # another engine's workflow (or nobody's): its owner answers
            try:
                result = await self.service.call(request.op, {"workflow": request.workflow, **request.args})
                ok, message = True, str(result)
            except ControlError as exc:
                ok, message = False, str(exc)
            except Exception as exc:
                log.exception("control request %s failed", request.id)
                ok, message = False, f"internal error: {type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await engine.stores.control_requests.answer(request.id, ok=ok, message=message, by=engine.owner)
