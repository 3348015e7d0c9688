"""Settings for the state layer, read from ``AGENTDECK_*`` environment variables (flags win over them).

A setting that cannot be used (``AGENTDECK_EMBEDDING_DIMENSION=abc``) raises `SettingsError`, whose message is one
line naming the variable — the CLI prints it and exits 2 — instead of pydantic's multi-line report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """An ``AGENTDECK_*`` setting has a value that cannot be used; the message says which and why, in one line.

    Not a ``ValueError``: pydantic would wrap one raised by a validator into its own error again.
    """


def explain_settings(exc: ValidationError, *, prefix: str = "AGENTDECK_", secret: frozenset[str] = frozenset()) -> str:
    """One line for a settings validation error: ``AGENTDECK_X='value': what is wrong; ...``.

    Values of ``secret`` fields are never shown; URLs are shown without their password.
    """
    from db.connection import redact_url  # the connection module imports this one

    problems: list[str] = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{prefix}{field.upper()}" if field else "settings"
        value = error.get("input")
        if field in secret or not isinstance(value, str | int | float):
            shown = name
        else:
            shown = f"{name}={redact_url(str(value))[:80]!r}"
        message = str(error["msg"])
        problems.append(f"{shown}: {message[:1].lower()}{message[1:]}")
    return "; ".join(problems)


def default_data_dir() -> Path:
    """Where the embedded database lives: ``$XDG_DATA_HOME/agentdeck`` (``~/.local/share/agentdeck``)."""
    return Path(platformdirs.user_data_dir("agentdeck", appauthor=False))


def default_db_url() -> str:
    """The embedded default: a ``surrealkv://`` store under the data dir."""
    return f"surrealkv://{default_data_dir() / 'state.db'}"


class DbSettings(BaseSettings):
    """Where the state lives and how to log in to it.

    ``AGENTDECK_DB`` picks the URL (``mem://``, ``surrealkv://PATH``, ``ws://host:port``, ``wss://...``);
    namespace, database and credentials matter for servers only.

    Raises:
        SettingsError: A variable has a value that cannot be used.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTDECK_", extra="ignore")

    db: str = Field(default_factory=default_db_url)
    db_namespace: str = "agentdeck"
    db_database: str = "main"
    db_user: str | None = None
    # A SecretStr so the password never shows up in a repr, a log line or a traceback.
    db_pass: SecretStr | None = None
    # A token (a JWT from a SurrealDB access method) instead of user and password; never shown either.
    db_token: SecretStr | None = None
    # Dimension of the memory vectors; the HNSW index is built for it. 384 = the bundled offline embedder.
    embedding_dimension: int = Field(default=384, ge=1, le=65_536)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise SettingsError(explain_settings(exc, secret=frozenset({"db_pass", "db_user", "db_token"}))) from None
