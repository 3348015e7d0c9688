"""The E2B sandbox against the conformance suite, through the real e2b SDK and a FAKE of E2B's envd.

The cloud is out of reach here, so the SDK runs unmodified in its debug mode (no REST API) against
``tests.support.fake_envd``: a fake of envd, the agent inside every E2B sandbox, built on the SDK's own Connect
server stubs, running the processes on this machine. What the suite checks about processes it asks the sandbox side,
as it would a real E2B sandbox: the backend's own ``/proc`` scan run as a command through the SDK.

``test_live_e2b`` runs the same smallest check against the real E2B cloud when ``E2B_API_KEY`` is set, and says so
when it is skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.sandbox import Sandbox, SandboxUnavailable, make_sandbox
from engine.sandbox._e2b_pool import E2BPool
from engine.sandbox._e2b_run import exit_status
from engine.sandbox.e2b import E2BSandbox
from engine.sandbox.e2b_settings import E2BSettings
from tests.conformance.sandbox.suite import SandboxConformance, SandboxFactory, Transcript
from tests.support.fake_envd import FakeEnvd, serve_fake_envd


@pytest.fixture
async def envd(tmp_path: Path) -> AsyncIterator[FakeEnvd]:
    async with serve_fake_envd(tmp_path / "fake-e2b-home") as server:
        yield server


@pytest.fixture
async def pool(envd: FakeEnvd, tmp_path: Path) -> AsyncIterator[E2BPool]:
    settings = E2BSettings(workdir=str(tmp_path / "in-sandbox"), kill_grace=1.0, debug=True)
    pool = E2BPool(settings, {"debug": True, "sandbox_url": envd.url})
    yield pool
    await pool.close()


@pytest.fixture
def sandbox_factory(pool: E2BPool) -> SandboxFactory:
    def build(workdir: Path) -> Sandbox:
        return E2BSandbox(workdir, pool=pool)

    return build


class RemoteProbe:
    """Asks the sandbox (through the SDK) which processes of the command's tree run, remembering start times."""

    def __init__(self) -> None:
        self.observed: dict[int, str] = {}  # pid -> start time
        self.sandbox: E2BSandbox | None = None

    async def observe(self, sandbox: Sandbox) -> dict[int, str]:
        assert isinstance(sandbox, E2BSandbox)
        self.sandbox = sandbox
        found = {}
        for pid, (start, command) in (await sandbox.tree()).items():
            self.observed.setdefault(pid, start)
            found[pid] = command
        return found

    async def survivors(self) -> list[str]:
        if self.sandbox is None:
            return []
        alive = await self.sandbox.alive(list(self.observed.items()))
        return [f"pid {pid} still runs in the sandbox" for pid in alive]


@pytest.fixture
def process_probe() -> RemoteProbe:
    return RemoteProbe()


class TestE2BSandbox(SandboxConformance):
    """The conformance suite, on the E2B backend."""

    async def test_the_command_runs_through_envd(self, sandbox: Sandbox, envd: FakeEnvd) -> None:
        await sandbox.run("true")
        # The SDK's own request: bash -l -c, our launch line (working directory, new session) inside it.
        assert any(c.cmd == "/bin/bash" and "exec setsid /bin/sh -c true" in c.args[-1] for c in envd.process.started)


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        (0, None, 0),
        (3, "exit status 3", 3),
        (-1, "signal: killed", 137),
        (-1, "signal: terminated", 143),
        (-1, "signal: segmentation fault (core dumped)", 139),  # envd runs with LimitCORE=infinity
        (-1, "signal: aborted (core dumped)", 134),
    ],
)
def test_envd_end_events_become_shell_exit_statuses(code: int, error: str | None, status: int) -> None:
    assert exit_status(code, error) == status


async def test_without_an_api_key_the_sandbox_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    with pytest.raises(SandboxUnavailable, match="E2B_API_KEY"):
        make_sandbox("e2b", tmp_path / "work")


@pytest.mark.skipif(not os.environ.get("E2B_API_KEY"), reason="live E2B test: set E2B_API_KEY to run it")
async def test_live_e2b(tmp_path: Path) -> None:
    """Against the real cloud: output streams, exit status, files, and the sandbox is killed at the end."""
    pool = E2BPool(E2BSettings())
    sandbox = E2BSandbox(tmp_path / "work", pool=pool)
    try:
        transcript = Transcript()
        await sandbox.write_file("in.txt", "hello")
        result = await asyncio.wait_for(sandbox.run("cat in.txt; echo; exit 3", on_output=transcript), 120)
        assert result.exit_code == 3
        assert transcript.text() == ["hello"]
    finally:
        await sandbox.close()
        await pool.close()
