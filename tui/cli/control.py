"""How CLI control commands reach a workflow: through its owner's control socket when one is running,
otherwise by opening the database and running the same ``ControlService`` here.

When an operation starts work here (retry, rollback or resume of a stopped workflow), the command stays in the
foreground until the workflow finishes and exits with its status, like ``agentdeck run --headless``.
"""

from __future__ import annotations

import sys
from typing import Any

from db import connect
from db.connection import url_kind
from db.errors import DatabaseUnavailable
from db.settings import DbSettings
from db.stores import Stores
from engine.control import (
    ControlRefused,
    ControlService,
    ask_owner_via_database,
    call_owner,
    control_socket_path,
)
from engine.engine import Engine
from engine.errors import ControlError
from engine.private_paths import control_token_path
from tui.cli._common import EXIT_BAD_INPUT, EXIT_OK, BadInput, run_async
from tui.cli.headless import make_printer, run_in_foreground


def control(op: str, db_url: str | None = None, *, foreground_json: bool = False, **args: Any) -> tuple[Any, int]:
    """Run one control operation; returns (result, exit code)."""
    url = db_url or DbSettings().db

    async def via_owner() -> tuple[bool, Any]:
        path = control_socket_path(url)
        if path is None or not path.exists():
            return False, None
        try:
            return True, await call_owner(path, op, args)
        except ConnectionError:
            return False, None  # a stale socket: its owner is gone, so the database is free
        except ControlRefused as exc:
            raise DatabaseUnavailable(
                f"the engine running on {url} refused this command: {exc}",
                hint=f"run it as the user who started that engine, outside any task; its token is in "
                f"{control_token_path(path)}",
            ) from exc
        except ControlError as exc:
            raise BadInput(f"agentdeck: {exc}") from exc

    handled, result = run_async(via_owner)
    if handled:
        return result, EXIT_OK
    if op in ROUTED_OPS and url_kind(url) == "server":
        handled, result = run_async(lambda: via_database(url, op, args))
        if handled:
            return result, EXIT_OK

    started: list[str] = []

    async def start_here(engine: Engine) -> str:
        try:
            value = await ControlService(engine).call(op, args)
        except ControlError as exc:
            raise BadInput(f"agentdeck: {exc}") from exc
        started.append(str(value))
        return str(args["workflow"])

    if op in ("retry", "rollback", "resume", "fork"):
        code = run_async(lambda: run_in_foreground(url, None, foreground_json, start_here))
        return (started[0] if started else None), code

    async def here() -> Any:
        async with connect(url) as db, Engine(db) as engine:
            try:
                return await ControlService(engine).call(op, args)
            except ControlError as exc:
                raise BadInput(f"agentdeck: {exc}") from exc

    return run_async(here), EXIT_OK


ROUTED_OPS = ("pause", "resume", "cancel", "retry", "rollback", "approve", "fork")


async def via_database(url: str, op: str, args: dict[str, Any]) -> tuple[bool, Any]:
    """On a server database, a workflow another engine runs is controlled through a control request."""
    other = {k: v for k, v in args.items() if k != "workflow"}
    async with connect(url) as db:
        try:
            answer = await ask_owner_via_database(Stores.over(db), str(args["workflow"]), op, other)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the engine running {args['workflow']} did not answer within 15 s",
                hint="is its process still alive? once its lease expires, `agentdeck resume` can take over",
            ) from None
    if answer is None:
        return False, None
    ok, message = answer
    if not ok:
        raise BadInput(f"agentdeck: {message}")
    return True, message


def resume_command(workflow_id: str, db_url: str | None, as_json: bool) -> int:
    result, code = control("resume", db_url, foreground_json=as_json, workflow=workflow_id)
    if result and code == EXIT_OK:
        print(f"agentdeck: {result}", file=sys.stderr)
    return code


__all__ = ["EXIT_BAD_INPUT", "control", "make_printer", "resume_command"]
