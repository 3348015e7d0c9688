"""A SurrealDB server with credentials (issue 14, point 3): a token (``AGENTDECK_DB_TOKEN``) works as user and
password do, and a token the server refuses is said so, with exit code 3, and never shown."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from surrealdb import AsyncSurreal

from db import connect
from tests.conftest import server_settings

pytestmark = pytest.mark.server
AGENTDECK = str(Path(sys.executable).parent / "agentdeck")


async def test_a_token_signs_in_like_a_password_does(surreal_server_url: str) -> None:
    sdk = AsyncSurreal(surreal_server_url)
    await sdk.connect()
    try:
        signed_in = await sdk.signin({"username": "root", "password": "root"})  # a JWT for the root user
    finally:
        await sdk.close()
    token = getattr(signed_in, "access", signed_in)
    assert isinstance(token, str) and token.count(".") == 2
    settings = server_settings(f"tok_{uuid.uuid4().hex[:8]}").model_copy(
        update={"db_user": None, "db_pass": None, "db_token": SecretStr(token)}
    )
    async with connect(surreal_server_url, settings) as db:
        assert await db.query_one("RETURN 41 + 1") == 42


def test_a_refused_token_exits_3_and_is_never_shown(surreal_server_url: str, tmp_path: Path) -> None:
    token = f"eyJhbGciOiJIUzI1NiJ9.{uuid.uuid4().hex}.c2ln"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    env |= {"XDG_DATA_HOME": str(tmp_path), "AGENTDECK_DB_TOKEN": token, "AGENTDECK_DB_NAMESPACE": "tok_refused"}
    result = subprocess.run(
        [AGENTDECK, "workflows", "list", "--db", surreal_server_url], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "refused our credentials" in result.stderr and "AGENTDECK_DB_TOKEN" in result.stderr
    assert token not in result.stderr + result.stdout and "Traceback" not in result.stderr
