"""Settings for the state layer, read from ``AGENTDECK_*`` environment variables (flags win over them)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """

    model_config = SettingsConfigDict(env_prefix="AGENTDECK_", extra="ignore")

    db: str = Field(default_factory=default_db_url)
    db_namespace: str = "agentdeck"
    db_database: str = "main"
    db_user: str | None = None
    # A SecretStr so the password never shows up in a repr, a log line or a traceback.
    db_pass: SecretStr | None = None
    # Dimension of the memory vectors; the HNSW index is built for it. 384 = the bundled offline embedder.
    embedding_dimension: int = 384
