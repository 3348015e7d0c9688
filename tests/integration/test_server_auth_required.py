"""A SurrealDB server that requires credentials (issue 14, point 4): without them, or with a wrong password, the
command line and the dashboard refuse to start with exit code 3 and a message saying which (never a traceback, never
the password); with them everything works, and a connection the server dropped signs in again when it comes back.

Real parts: the ws test server with ``require_auth`` (it refuses an anonymous session's queries with the error a
``surreal start --user root --pass root`` server sends), the installed ``agentdeck`` entry point in subprocesses, the
dashboard under a pseudo-terminal, and a server really restarted (stopped, started again on its files).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from surrealdb import AsyncSurreal

from db import connect
from tests.conftest import server_settings
from tests.support.surreal_server import restartable_test_server, server_available, surreal_test_server

pytestmark = pytest.mark.server
AGENTDECK = str(Path(sys.executable).parent / "agentdeck")
#: What a SurrealDB 3 server answers an anonymous session's query (core `Datastore::process_plan`, `check_anon`).
ANONYMOUS_REFUSED = "Anonymous access not allowed: Not enough permissions to perform this action"
WRONG_PASSWORD = "not-the-Pa55word"
#: A terminal control sequence (CSI or OSC), as the dashboard writes them.
ESCAPE = re.compile(r"\x1b(\[[0-9;?<>=$]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\))")


@pytest.fixture(scope="module")
def auth_server_url() -> Iterator[str]:
    reason = server_available()
    if reason is not None:
        pytest.skip(f"SurrealDB ws test server unavailable: {reason}")
    with surreal_test_server(require_auth=True) as url:
        yield url


def env_for(tmp_path: Path, **settings: str) -> dict[str, str]:
    """No inherited ``AGENTDECK_*`` settings (credentials least of all), a data dir of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    namespace = f"authreq_{uuid.uuid4().hex[:8]}"
    return env | {"XDG_DATA_HOME": str(tmp_path), "AGENTDECK_DB_NAMESPACE": namespace, **settings}


def workflows_list(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTDECK, "workflows", "list", "--db", url], env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def test_the_server_refuses_an_anonymous_session_as_surreal_start_does(auth_server_url: str) -> None:
    sdk = AsyncSurreal(auth_server_url)
    await sdk.connect()
    try:
        await sdk.use("authreq", "main")  # allowed: choosing where to go is not running anything
        refused = await sdk.query_raw("RETURN 1")
        assert refused["error"]["message"] == ANONYMOUS_REFUSED and refused["error"]["code"] == -32002, refused
        await sdk.signin({"username": "root", "password": "root"})
        assert (await sdk.query_raw("RETURN 1"))["result"][0]["result"] == 1
        await sdk.invalidate()  # signed out: anonymous again
        assert (await sdk.query_raw("RETURN 1"))["error"]["message"] == ANONYMOUS_REFUSED
    finally:
        await sdk.close()


def test_without_credentials_a_command_exits_3_saying_the_server_requires_them(
    auth_server_url: str, tmp_path: Path
) -> None:
    result = workflows_list(auth_server_url, env_for(tmp_path))
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"agentdeck: the server at {auth_server_url} requires credentials, and none are set",
        "  hint: set AGENTDECK_DB_USER and AGENTDECK_DB_PASS (or AGENTDECK_DB_TOKEN) to a user of that server",
    ]
    assert result.stdout == ""


def test_a_wrong_password_exits_3_saying_it_was_refused_and_is_never_shown(
    auth_server_url: str, tmp_path: Path
) -> None:
    env = env_for(tmp_path, AGENTDECK_DB_USER="root", AGENTDECK_DB_PASS=WRONG_PASSWORD)
    result = workflows_list(auth_server_url, env)
    assert result.returncode == 3, result.stderr
    assert f"the server at {auth_server_url} refused our credentials" in result.stderr
    assert "AGENTDECK_DB_USER and AGENTDECK_DB_PASS" in result.stderr
    assert WRONG_PASSWORD not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_with_the_right_credentials_a_command_works(auth_server_url: str, tmp_path: Path) -> None:
    result = workflows_list(auth_server_url, env_for(tmp_path, AGENTDECK_DB_USER="root", AGENTDECK_DB_PASS="root"))
    assert result.returncode == 0, result.stderr
    assert "no workflows yet" in result.stdout


def run_in_a_terminal(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr (as a person's terminal is); its exit code
    and everything it wrote there."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process and everything it started closed the terminal
                break
            if not chunk:
                break
            output += chunk
        else:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{args} still ran after {timeout}s; it wrote: {output.decode(errors='replace')[-2000:]}")
        return process.wait(timeout=30), output.decode("utf-8", "replace")
    finally:
        os.close(controller)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_without_credentials_the_dashboard_exits_3_saying_the_server_requires_them(
    auth_server_url: str, tmp_path: Path
) -> None:
    env = env_for(tmp_path, TERM="xterm-256color")
    code, output = run_in_a_terminal([AGENTDECK, "ui", "--db", auth_server_url], env)
    assert code == 3, output
    # Said once the dashboard has given the terminal back: plain lines after the last control sequence it wrote.
    said = output[[m.end() for m in ESCAPE.finditer(output)][-1] :]
    assert said.replace("\r\n", "\n").rstrip("\n").split("\n") == [
        f"agentdeck: the server at {auth_server_url} requires credentials, and none are set",
        "  hint: set AGENTDECK_DB_USER and AGENTDECK_DB_PASS (or AGENTDECK_DB_TOKEN) to a user of that server",
    ], output[-2000:]
    assert "Traceback" not in output


async def test_a_connection_signs_in_again_when_the_server_comes_back(tmp_path: Path) -> None:
    """After a restart the SDK reconnects into an anonymous session, which this server refuses outright (not
    "Specify a namespace" as a server without credentials does): the database signs in again and runs on."""
    reason = server_available()
    if reason is not None:
        pytest.skip(f"SurrealDB ws test server unavailable: {reason}")
    settings = server_settings(f"authreq_{uuid.uuid4().hex[:8]}")
    with restartable_test_server(tmp_path / "server", require_auth=True) as server:
        async with connect(server.url, settings) as db:
            await db.query("CREATE note:1 SET text = 'before'")
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            assert await db.query_one("SELECT VALUE text FROM note:1") == ["before"]
            await db.query("CREATE note:2 SET text = 'after'")
            assert await db.query_one("SELECT VALUE text FROM note ORDER BY text") == ["after", "before"]
