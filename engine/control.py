"""Controls from outside the owning process: what other processes can ask of an engine, and how they reach it.

* ``engine.control_service``: the operations (``ControlService``), transport-free.
* ``engine.control_socket``: the Unix socket beside an embedded database file (``ControlServer``, ``call_owner``).
* ``engine.control_db``: control requests through a server database (``DatabaseControlListener``).

``ControlChannels`` starts whichever of them an engine's database calls for. When no owner is running, the CLI opens
the database itself and runs the same ``ControlService`` over its own engine.
"""

from __future__ import annotations

from engine.control_db import DatabaseControlListener, ask_owner_via_database
from engine.control_service import ControlRefused, ControlService
from engine.control_socket import ControlServer, call_owner
from engine.engine import Engine
from engine.private_paths import control_socket_path

__all__ = [
    "ControlChannels",
    "ControlRefused",
    "ControlServer",
    "ControlService",
    "ask_owner_via_database",
    "call_owner",
    "control_socket_path",
]


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
