"""Asking the engine that runs a workflow to carry out a control, through a server database: a ``control_request``
row it follows through the change feed, answered in the same row. The answering side is ``engine.control_db``;
this side imports no engine, so the engine itself can ask (a dashboard on a server database).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from db.connection import Database
from db.models import ControlRequest, WorkflowStatus
from db.stores import Stores
from db.watch import watcher_for

__all__ = ["ask_owner_via_database"]


async def ask_owner_via_database(
    db: Database, stores: Stores, workflow: str, op: str, args: dict[str, Any], limit_s: float = 15
) -> tuple[bool, str] | None:
    """Send a control to the engine running ``workflow`` through the database; None if no live engine owns it.

    Returns (ok, message). Raises ``TimeoutError`` if the owner holds a live lease but does not answer.
    """
    found = await stores.workflows.get(workflow)
    if found is None or found.status not in (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED):
        return None
    if found.lease_until is None or found.lease_until <= datetime.now(UTC):
        return None
    # The answer arrives the way the request reached the owner: through the control_request change feed (one
    # channel both ways, no polling). The position is taken before the request exists, so no answer is missed.
    watcher = watcher_for(db)
    position = await watcher.position()
    request = await stores.control_requests.create(ControlRequest(workflow=workflow, op=op, args=args))
    async with asyncio.timeout(limit_s):
        async with contextlib.aclosing(watcher.watch("control_request", since=position)) as changes:
            async for change in changes:
                answered = change.record
                if isinstance(answered, ControlRequest) and answered.id == request.id and answered.status != "pending":
                    return answered.status == "done", (answered.result or answered.error or "")
    raise AssertionError("unreachable: a change feed does not end")  # pragma: no cover
