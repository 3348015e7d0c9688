"""Controls from outside the owning process: a service over ``Engine``, a local control socket, and control
requests through a server database.

An embedded database is locked by the process that opened it, so ``agentdeck workflows pause ID`` from a second
terminal cannot open it. The owning engine therefore serves the same operations on a Unix socket beside the
database file (owner-only permissions), and the CLI uses it transparently: same output, same exit codes. When no
owner is running, the CLI opens the database itself and runs the same ``ControlService`` over its own engine.

On a server database there is no shared file to put a socket beside: the CLI writes a ``control_request`` row and
the engine that owns the workflow, which follows that table's change feed, carries it out and writes the answer.

Socket protocol: one JSON object per line each way. Request
``{"op": "pause", "args": {"workflow": "wf-1"}, "token": "..."}``; reply ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "message"}`` (with ``"refused": true`` when the engine would not serve the client at all).

Who may use the socket: the socket file is owner-only, and sandboxed tasks cannot see it in bubblewrap mode; on top
of that each engine makes a random token at start, in a file only its user can read (``control_token_path``, 0600
in a 0700 directory under ``/tmp``, which bubblewrap replaces with a private one), and serves only requests that
carry it. A plain-mode task runs as the same user and could read the token, so the server also looks at who is
calling (SO_PEERCRED) and refuses a process that belongs to a running sandbox (``engine.sandbox.sandboxed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db.connection import Database
from db.errors import DatabaseUnavailable
from db.models import ControlRequest, Workflow, WorkflowStatus
from db.stores import Stores
from db.watch import watcher_for
from engine.embeddings import EmbedderError
from engine.engine import Engine, lease_expired
from engine.errors import ControlError
from engine.memory import MemoryInputError
from engine.private_paths import control_socket_path, control_token_path
from engine.sandbox import sandboxed

log = logging.getLogger(__name__)

__all__ = [
    "ControlChannels",
    "ControlRefused",
    "ControlServer",
    "ControlService",
    "ask_owner_via_database",
    "call_owner",
    "control_socket_path",
]


class ControlRefused(ControlError):
    """The engine refused the client itself (no or wrong token, or a sandboxed caller), not just the operation."""


class ControlService:
    """The operations the CLI and the socket offer, over one engine. Results are JSON-ready."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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

    async def op_fork(self, workflow: str, task: str, checkpoint: str, values: dict[str, Any] | None = None) -> str:
        head = await self.engine.fork_graph(workflow, task, checkpoint, values)
        return f"forked {task} of {workflow} at {checkpoint}; running from {head}"

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


class ControlServer:
    """Serves a ``ControlService`` on a Unix socket readable and writable by the owner only, to clients that
    present this engine's token and are not part of a sandbox."""

    def __init__(self, service: ControlService, path: Path) -> None:
        self.service = service
        self.path = path
        self.token_path = control_token_path(path)
        self._token = secrets.token_hex(32)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        _write_private(self.token_path, self._token)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed owner: we hold the DB lock, so it is ours now
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            if self.token_path.read_text() == self._token:  # not a newer engine's (ours is gone: we closed)
                self.token_path.unlink()

    def _refusal(self, writer: asyncio.StreamWriter, request: Any) -> str | None:
        """Why this client is not served, or None. Checked on every request, the token in constant time."""
        token = request.get("token") if isinstance(request, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token.encode()):
            return "refused: the request does not carry this engine's control token"
        peer = _peer_pid(writer)
        if peer is None:
            return "refused: cannot tell which process is calling"
        why = sandboxed(peer)
        if why is not None:
            return f"refused: the calling process {peer} belongs to a sandboxed task ({why})"
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    refusal = self._refusal(writer, request)
                    if refusal is not None:
                        log.warning("control socket: %s", refusal)
                        writer.write(json.dumps({"ok": False, "refused": True, "error": refusal}).encode() + b"\n")
                        await writer.drain()
                        return
                    result = await self.service.call(str(request["op"]), dict(request.get("args") or {}))
                    reply: dict[str, Any] = {"ok": True, "result": result}
                except ControlError as exc:
                    reply = {"ok": False, "error": str(exc)}
                except Exception as exc:
                    log.exception("control request failed")
                    reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process that connected (the kernel's SO_PEERCRED, translated into our pid namespace)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        return None
    return pid if pid > 0 else None


def _write_private(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` readable by this user only (0600), in a directory only this user may enter.

    The directory sits in a shared ``/tmp``: it must be ours and nobody else's, or another user could read or
    swap what we put there.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise DatabaseUnavailable(
            f"{directory} is not a directory owned by you; refusing to keep the engine's control token there",
            hint=f"remove {directory} (someone else created it) or set TMPDIR to a directory of your own",
        )
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700)
    partial = directory / f".{path.name}.{os.getpid()}.partial"
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(content)
    os.replace(partial, path)


def read_token(socket_path: Path) -> str | None:
    """The token of the engine listening on ``socket_path``, or None when there is none to read."""
    try:
        return control_token_path(socket_path).read_text().strip()
    except OSError:
        return None


async def call_owner(path: Path, op: str, args: dict[str, Any], limit_s: float = 30) -> Any:
    """Send one operation to the owning process. Raises ``ConnectionError`` if nobody listens,
    ``ControlRefused`` if the owner would not serve us, ``ControlError`` with the owner's message if the operation
    was refused."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5)
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
        raise ConnectionError(f"no engine listens on {path}") from exc
    try:
        request = {"op": op, "args": args, "token": read_token(path)}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), limit_s)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise ConnectionError(f"the engine on {path} closed the connection")
    reply = json.loads(line)
    if reply.get("refused"):
        raise ControlRefused(str(reply.get("error")))
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error")))
    return reply.get("result")


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


class ControlChannels:
    """Whatever lets other processes control this engine's workflows: the socket beside an embedded database
    file, or control requests on a server database. ``mem://`` has neither (nothing else can see it)."""

    def __init__(self, engine: Engine, db_url: str) -> None:
        service = ControlService(engine)
        path = control_socket_path(db_url)
        self._server = ControlServer(service, path) if path is not None else None
        self._listener = DatabaseControlListener(service) if engine.db.kind == "server" else None

    async def start(self) -> None:
        if self._server is not None:
            await self._server.start()
        if self._listener is not None:
            await self._listener.start()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
        if self._listener is not None:
            await self._listener.close()


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
