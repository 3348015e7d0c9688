"""The control socket: a Unix socket beside an embedded database file, served by the engine that holds the file.

An embedded database is locked by the process that opened it, so ``agentdeck workflows pause ID`` from a second
terminal cannot open it, and neither can a second dashboard. The owning engine therefore serves its
``ControlService`` here (owner-only permissions), and the CLI and attached dashboards use it.

Protocol: one JSON object per line each way. Request ``{"op": "pause", "args": {"workflow": "wf-1"}, "token":
"..."}``; reply ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "message"}`` (with ``"refused": true``
when the engine would not serve the client at all). A request may carry an ``"id"``: its reply then carries the
same id and the connection may have several requests in flight (an attached dashboard keeps one connection open).
A stream operation (``ControlService.STREAMS``) answers with items ``{"id": N, "item": ...}`` until the client sends
``{"id": N, "op": "stop"}`` or disconnects, or the stream ends (``{"id": N, "end": true}``, with ``"error"`` if it
failed).

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
from pathlib import Path
from typing import Any

from db.errors import DatabaseUnavailable
from engine.control_service import ControlRefused, ControlService
from engine.errors import ControlError
from engine.private_paths import control_token_path
from engine.sandbox import sandboxed

log = logging.getLogger(__name__)

#: The longest line either side sends (a page of query results, base64-encoded, can pass asyncio's 64 KiB default).
LINE_LIMIT = 64 * 1024 * 1024

__all__ = ["LINE_LIMIT", "ControlServer", "call_owner", "read_token"]


class ControlServer:
    """Serves a ``ControlService`` on a Unix socket readable and writable by the owner only, to clients that
    present this engine's token and are not part of a sandbox."""

    def __init__(self, service: ControlService, path: Path) -> None:
        self.service = service
        self.path = path
        self.token_path = control_token_path(path)
        self._token = secrets.token_hex(32)
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], asyncio.WriteTransport] = {}

    async def start(self) -> None:
        _write_private(self.token_path, self._token)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed owner: we hold the DB lock, so it is ours now
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=LINE_LIMIT)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # Attached dashboards keep their connection open: end them (their reads see the end of the stream, and
            # what they had in flight is cancelled), or the server never finishes closing.
            for transport in list(self._connections.values()):
                transport.abort()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=5)
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
        current = asyncio.current_task()
        assert current is not None
        self._connections[current] = writer.transport
        connection = _Connection(self.service, writer)
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                except ValueError:
                    await connection.send({"ok": False, "error": "a request must be one JSON object per line"})
                    continue
                if isinstance(request, dict) and request.get("op") == "stop":
                    connection.stop(request.get("id"))
                    continue
                refusal = self._refusal(writer, request)
                if refusal is not None:
                    log.warning("control socket: %s", refusal)
                    tag = {"id": request["id"]} if isinstance(request, dict) and "id" in request else {}
                    await connection.send({**tag, "ok": False, "refused": True, "error": refusal})
                    return
                if not isinstance(request, dict) or not isinstance(request.get("id", 0), int | str):
                    await connection.send({"ok": False, "error": "a request is a JSON object; its id a number"})
                elif "id" in request:
                    connection.start(request)  # in flight beside the others; the reply names its id
                elif request.get("op") in self.service.STREAMS:
                    await connection.send({"ok": False, "error": "a stream needs an id (to stop it by)"})
                else:
                    await connection.serve(request)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away mid-line, or sent a line past LINE_LIMIT
        finally:
            await connection.close()
            self._connections.pop(current, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _Connection:
    """One client's requests: answered one by one, or (with ids) concurrently, streams included."""

    def __init__(self, service: ControlService, writer: asyncio.StreamWriter) -> None:
        self.service = service
        self.writer = writer
        self._lock = asyncio.Lock()
        self._inflight: dict[Any, asyncio.Task[None]] = {}

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=str).encode() + b"\n"
        async with self._lock:  # whole lines, never interleaved
            self.writer.write(data)
            await self.writer.drain()

    def start(self, request: dict[str, Any]) -> None:
        ident = request["id"]
        self.stop(ident)
        task = asyncio.create_task(self.serve(request), name=f"agentdeck-control-{request.get('op')}")
        self._inflight[ident] = task
        task.add_done_callback(lambda done: self._forget(ident, done))

    def _forget(self, ident: Any, task: asyncio.Task[None]) -> None:
        if self._inflight.get(ident) is task:
            del self._inflight[ident]

    def stop(self, ident: Any) -> None:
        task = self._inflight.pop(ident, None)
        if task is not None:
            task.cancel()

    async def serve(self, request: dict[str, Any]) -> None:
        tag = {"id": request["id"]} if "id" in request else {}
        op = str(request.get("op"))
        try:
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError("args must be a JSON object")
            if op in self.service.STREAMS:
                async with contextlib.aclosing(self.service.stream(op, args)) as items:
                    async for item in items:
                        await self.send({**tag, "item": item})
                await self.send({**tag, "end": True})
                return
            reply: dict[str, Any] = {"ok": True, "result": await self.service.call(op, args)}
        except ControlError as exc:
            reply = {"ok": False, "error": str(exc)}
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("control request %s failed", op)
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if op in self.service.STREAMS:
            reply = {"end": True, "error": reply.get("error")}
        with contextlib.suppress(ConnectionError):
            await self.send({**tag, **reply})

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


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
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=LINE_LIMIT), 5)
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
