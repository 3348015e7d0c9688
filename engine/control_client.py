"""Reaching the engine that owns a workflow, from another process (the CLI): the one place that knows how.

An embedded database is locked by the engine that opened it: that engine serves controls on its Unix socket
(``engine.control.ControlServer``), so the socket is tried first. On a server database, an engine elsewhere that
runs the workflow is asked through a ``control_request`` row it follows through the change feed. When neither
owner answers, nobody runs the workflow and the caller may open the database and act itself (with the same
``ControlService``); ``STARTS_WORK`` names the operations that then start the workflow running in the caller.
"""

from __future__ import annotations

from typing import Any

from db import connect
from db.connection import url_kind
from db.errors import DatabaseUnavailable
from db.stores import Stores
from engine.control import ControlRefused, ask_owner_via_database, call_owner, control_socket_path
from engine.errors import ControlError
from engine.private_paths import control_token_path

#: Operations on one workflow, which an engine elsewhere on a server database may own.
ROUTED_OPS = ("pause", "resume", "cancel", "retry", "rollback", "approve", "fork", "watch_add", "watch_remove")
#: Operations that set a stopped workflow running: done here, the caller stays until it ends.
STARTS_WORK = ("retry", "rollback", "resume", "fork")
#: Operations that start a new workflow running, whose id they answer: done here, the caller stays until it ends.
STARTS_NEW = ("diverge_id",)
ANSWER_WITHIN_S = 15.0


async def send_to_owner(url: str, op: str, args: dict[str, Any]) -> tuple[bool, Any]:
    """Ask the engine that owns ``url`` (its socket) or the workflow (a control request on a server) to carry out
    ``op``; returns (whether an owner handled it, its result).

    Raises:
        ControlError: the owner refused the operation itself (unknown workflow, nothing to approve, ...).
        DatabaseUnavailable: the owner refused this client, or did not answer in time.
    """
    path = control_socket_path(url)
    if path is not None and path.exists():
        try:
            return True, await call_owner(path, op, args)
        except ConnectionError:
            pass  # a stale socket: its owner is gone, so the database is free
        except ControlRefused as exc:
            raise DatabaseUnavailable(
                f"the engine running on {url} refused this command: {exc}",
                hint=f"run it as the user who started that engine, outside any task; its token is in "
                f"{control_token_path(path)}",
            ) from exc
    if op in ROUTED_OPS and url_kind(url) == "server":
        return await _via_database(url, op, args)
    return False, None


async def _via_database(url: str, op: str, args: dict[str, Any]) -> tuple[bool, Any]:
    """On a server database, a workflow another engine runs is controlled through a control request."""
    other = {k: v for k, v in args.items() if k != "workflow"}
    async with connect(url) as db:
        try:
            answer = await ask_owner_via_database(db, Stores.over(db), str(args["workflow"]), op, other)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the engine running {args['workflow']} did not answer within {ANSWER_WITHIN_S:g} s",
                hint="is its process still alive? once its lease expires, `agentdeck resume` can take over",
            ) from None
    if answer is None:
        return False, None
    ok, message = answer
    if not ok:
        raise ControlError(message)
    return True, message
