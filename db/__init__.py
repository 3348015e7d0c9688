"""State: the SurrealDB connection, schema migrations, typed stores and change watching.

Nothing here imports ``engine`` or ``tui``; both build on this package.
"""

from db.connection import Database, connect
from db.errors import DatabaseError, DatabaseUnavailable, QueryFailed
from db.settings import DbSettings

__all__ = ["Database", "DatabaseError", "DatabaseUnavailable", "DbSettings", "QueryFailed", "connect"]
