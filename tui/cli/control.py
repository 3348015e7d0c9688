"""How CLI control commands reach a workflow: through the engine that owns it when there is one
(``engine.control_client``: its control socket, or a control request on a server database), otherwise by opening
the database and running the same ``ControlService`` here.

When an operation starts work here (retry, rollback or resume of a stopped workflow), the command stays in the
foreground until the workflow finishes and exits with its status, like ``agentdeck run --headless``.
"""

from __future__ import annotations

import sys
from typing import Any

from db import connect
from db.settings import DbSettings
from engine.control import ControlService
from engine.control_client import STARTS_NEW, STARTS_WORK, send_to_owner
from engine.engine import Engine
from engine.errors import ControlError
from tui.cli._common import EXIT_BAD_INPUT, EXIT_OK, BadInput, run_async
from tui.cli.headless import make_printer, run_in_foreground


def control(op: str, db_url: str | None = None, *, foreground_json: bool = False, **args: Any) -> tuple[Any, int]:
    """Run one control operation; returns (result, exit code)."""
    url = db_url or DbSettings().db

    async def via_owner() -> tuple[bool, Any]:
        try:
            return await send_to_owner(url, op, args)
        except ControlError as exc:
            raise BadInput(f"agentdeck: {exc}") from exc

    handled, result = run_async(via_owner)
    if handled:
        return result, EXIT_OK

    started: list[str] = []

    async def start_here(engine: Engine) -> str:
        try:
            value = await ControlService(engine).call(op, args)
        except ControlError as exc:
            raise BadInput(f"agentdeck: {exc}") from exc
        started.append(str(value))
        return str(value) if op in STARTS_NEW else str(args["workflow"])

    if op in STARTS_WORK or op in STARTS_NEW:
        code = run_async(lambda: run_in_foreground(url, None, foreground_json, start_here))
        return (started[0] if started else None), code

    async def here() -> Any:
        async with connect(url) as db, Engine(db) as engine:
            try:
                return await ControlService(engine).call(op, args)
            except ControlError as exc:
                raise BadInput(f"agentdeck: {exc}") from exc

    return run_async(here), EXIT_OK


def resume_command(workflow_id: str, db_url: str | None, as_json: bool) -> int:
    result, code = control("resume", db_url, foreground_json=as_json, workflow=workflow_id)
    if result and code == EXIT_OK:
        print(f"agentdeck: {result}", file=sys.stderr)
    return code


__all__ = ["EXIT_BAD_INPUT", "control", "make_printer", "resume_command"]
