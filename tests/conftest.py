"""Shared fixtures: real SurrealDB engines (mem://, a temp surrealkv://) and, where available, a ws server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from db import Database, DbSettings, connect

# Tests never touch the user's real data dir, whatever a test forgets to pass.
os.environ.setdefault("XDG_DATA_HOME", str(Path("/tmp") / f"agentdeck-tests-{os.getpid()}"))
# The e2b SDK reads this once, when first imported: with its connection retries on, a connection that failed leaves a
# thread that aborts the interpreter at exit (design.md). Set before any test module imports it.
os.environ.setdefault("E2B_CONNECTION_RETRIES", "0")

EMBEDDED_KINDS = ["mem", "surrealkv"]


def embedded_url(kind: str, tmp_path: Path) -> str:
    """A fresh embedded database URL of the given kind."""
    return "mem://" if kind == "mem" else f"surrealkv://{tmp_path / 'state.db'}"


@pytest.fixture(params=EMBEDDED_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on ``mem://`` and once on a temp ``surrealkv://`` store."""
    return embedded_url(str(request.param), tmp_path)


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """An open, migrated database, closed after the test."""
    async with connect(db_url) as db:
        yield db


@pytest.fixture(scope="session")
def surreal_server_url() -> Iterator[str]:
    """A real SurrealDB server over ws:// (``SURREAL_BIN``, or @surrealdb/node behind our RPC bridge)."""
    from tests.support.surreal_server import server_available, surreal_test_server

    reason = server_available()
    if reason is not None:
        pytest.skip(f"SurrealDB ws test server unavailable: {reason}")
    with surreal_test_server() as url:
        yield url


def server_settings(namespace: str) -> DbSettings:
    """Settings for a test on the shared server: its own namespace, root credentials."""
    return DbSettings(
        db_namespace=namespace,
        db_database="test",
        db_user="root",
        db_pass="root",  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
    )
