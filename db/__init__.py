"""State: the SurrealDB connection, schema migrations, typed stores and change watching.

Nothing here imports ``engine`` or ``tui``; both build on this package.

``Database`` and ``connect`` are loaded on first use: importing ``db.models`` or ``db.settings`` runs this file,
and commands that never open a database (``agentdeck validate``) should not load the SurrealDB driver for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db.errors import DatabaseError, DatabaseUnavailable, QueryFailed
from db.settings import DbSettings

if TYPE_CHECKING:
    from db.connection import Database, connect

_FROM_CONNECTION = ("Database", "connect")


def __getattr__(name: str) -> Any:
    if name in _FROM_CONNECTION:
        from db import connection

        return getattr(connection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Database", "DatabaseError", "DatabaseUnavailable", "DbSettings", "QueryFailed", "connect"]
