"""A FAKE E2B cloud for tests: the fake control-plane API and the fake envd, with the environment pointing at them.

Inside the block the unmodified e2b SDK, read from the environment as agentdeck reads it (``E2B_API_KEY``,
``E2B_API_URL``, ``E2B_SANDBOX_URL``), creates, lists and kills sandboxes at :mod:`tests.support.fake_e2b_api` and
runs commands and file calls at :mod:`tests.support.fake_envd` (processes of this machine). Sandbox working
directories go under ``tmp_path / "in-sandbox"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fake_e2b_api import FakeE2BApi, serve_fake_e2b_api
from tests.support.fake_envd import FakeEnvd, serve_fake_envd

#: The API key the fake cloud accepts (and that must never be seen in events, the database or logs).
FAKE_KEY = "e2b_fake_0123456789abcdef0123456789abcdef"


@dataclass
class FakeCloud:
    api: FakeE2BApi
    envd: FakeEnvd
    workdir: Path
    key: str = FAKE_KEY


@contextlib.asynccontextmanager
async def fake_e2b_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeCloud]:
    async with serve_fake_e2b_api(FAKE_KEY) as api, serve_fake_envd(tmp_path / "fake-e2b-home") as envd:
        workdir = tmp_path / "in-sandbox"
        monkeypatch.setenv("E2B_API_KEY", FAKE_KEY)
        monkeypatch.setenv("E2B_API_URL", api.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", envd.url)
        monkeypatch.setenv("E2B_CONNECTION_RETRIES", "0")
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        monkeypatch.setenv("AGENTDECK_E2B_WORKDIR", str(workdir))
        monkeypatch.setenv("AGENTDECK_E2B_KILL_GRACE", "1")
        yield FakeCloud(api, envd, workdir)
