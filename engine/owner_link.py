"""One long-lived connection to the engine that owns an embedded database, over its control socket: calls and
streams in flight side by side (the protocol is in ``engine.control_socket``). An attached dashboard
(``engine.attached``) runs everything through one ``OwnerLink``.

When the owner goes away (it exited, crashed, or closed the connection) every call in flight and every stream
fails with ``ConnectionError``, and ``lost`` is set so the dashboard can say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from engine.control_service import ControlRefused
from engine.control_socket import LINE_LIMIT, read_token
from engine.errors import ControlError

__all__ = ["OwnerLink"]

_END = object()  # a stream's queue: no more items


class OwnerLink:
    """Calls (``call``) and streams (``stream``) to the owning engine, over one socket connection."""

    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._token = read_token(path)
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._write_lock = asyncio.Lock()
        #: Set once the connection is gone; ``reason`` says why.
        self.lost = asyncio.Event()
        self.reason = ""
        self._reading = asyncio.create_task(self._read(), name="agentdeck-owner-link")

    @classmethod
    async def open(cls, path: Path, timeout_s: float = 2.0) -> OwnerLink:
        """Connect to the engine listening on ``path``. Raises ``ConnectionError`` if nobody listens there."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=LINE_LIMIT), timeout_s
            )
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
            raise ConnectionError(f"no engine listens on {path}") from exc
        return cls(path, reader, writer)

    async def call(self, op: str, args: dict[str, Any] | None = None, timeout_s: float = 60) -> Any:
        """One operation's result. Raises ``ControlError`` with the owner's message if it refused the operation,
        ``ControlRefused`` if it would not serve us, ``ConnectionError`` if the connection is gone."""
        ident = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[ident] = answer
        try:
            await self._send({"id": ident, "op": op, "args": args or {}, "token": self._token})
            async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can swallow a cancellation
                reply = await answer
        finally:
            self._calls.pop(ident, None)
            if answer.done() and not answer.cancelled():
                answer.exception()  # read: a loss set while sending must not be reported as never retrieved
        if reply.get("refused"):
            raise ControlRefused(str(reply.get("error")))
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        return reply.get("result")

    async def stream(self, op: str, args: dict[str, Any] | None = None) -> AsyncGenerator[Any, None]:
        """The items of a stream operation, until the owner ends it; closing the generator stops it there."""
        ident = next(self._ids)
        items: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[ident] = items
        try:
            await self._send({"id": ident, "op": op, "args": args or {}, "token": self._token})
            while True:
                message = await items.get()
                if message is _END:
                    raise ConnectionError(self.reason or "the engine closed the connection")
                if "item" in message:
                    yield message["item"]
                    continue
                if message.get("refused"):
                    raise ControlRefused(str(message.get("error")))
                if message.get("error"):
                    raise ControlError(str(message["error"]))
                return  # ended by the owner
        finally:
            self._streams.pop(ident, None)
            if not self.lost.is_set():
                with contextlib.suppress(ConnectionError):
                    await self._send({"id": ident, "op": "stop"})

    async def close(self) -> None:
        self._gone("the dashboard detached")
        self._reading.cancel()
        await asyncio.wait([self._reading])  # its outcome is ours to ignore; a cancel of close() itself is not
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _send(self, message: dict[str, Any]) -> None:
        if self.lost.is_set():
            raise ConnectionError(self.reason)
        data = json.dumps(message).encode() + b"\n"
        async with self._write_lock:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise ConnectionError(f"lost the engine on {self.path}: {exc}") from exc

    async def _read(self) -> None:
        why = f"the engine on {self.path} closed the connection (it stopped)"
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                ident = message.get("id")
                if ident is None:  # a refusal before the request was read as one: it is for everyone
                    for waiting in self._calls.values():
                        if not waiting.done():
                            waiting.set_result(message)
                    for items in self._streams.values():
                        items.put_nowait(message)
                    continue
                answer = self._calls.get(ident)
                if answer is not None and not answer.done():
                    answer.set_result(message)
                elif ident in self._streams:
                    self._streams[ident].put_nowait(message)
        except (ConnectionError, ValueError) as exc:
            why = f"lost the engine on {self.path}: {exc}"
        finally:
            self._gone(why)

    def _gone(self, why: str) -> None:
        if self.lost.is_set():
            return
        self.reason = why
        self.lost.set()
        for answer in self._calls.values():
            if not answer.done():
                answer.set_exception(ConnectionError(why))
        for items in self._streams.values():
            items.put_nowait(_END)
