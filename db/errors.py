"""Errors the state layer raises; the CLI maps ``DatabaseUnavailable`` to exit code 3."""


class DatabaseError(Exception):
    """Base class for every error raised by ``db``."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be opened or reached (locked, bad URL, server down, bad credentials).

    Attributes:
        hint: one line telling the user what to do about it.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class BadDatabaseUrl(DatabaseUnavailable):
    """The database URL itself is wrong (unknown scheme, no path, no host): bad input (exit 2), not an outage.

    A `DatabaseUnavailable`, so code that handles "cannot open the database" handles this too.
    """


class QueryFailed(DatabaseError):
    """A statement was rejected by SurrealDB (a bug on our side, or a schema mismatch)."""


class SchemaMismatch(DatabaseError):
    """The stored schema disagrees with this build (newer migrations, or another embedding size)."""
