"""The control socket (issue 9, point 6): it serves only clients that hold the engine's token, refuses sandboxed
clients even when they hold it (a plain-mode task runs as the engine's user), and the CLI says so with exit 3.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import stat
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from engine.control import ControlServer, ControlService, call_owner
from engine.control_socket import read_token
from engine.engine import Engine
from engine.private_paths import control_socket_path, control_token_path
from engine.sandbox import LocalSandbox
from tests.conformance.sandbox.suite import PATIENCE_S, Transcript
from tests.integration import test_cli_engine
from tests.integration.test_cli_engine import CountingRun, agentdeck
from tests.integration.test_hardening import TRIAL_ENV, kill_all, require_cgroup


@pytest.fixture
def trial() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    kill_all(name)


# -- the control socket -----------------------------------------------------------------------------------------------


@pytest.fixture
async def control_server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        server = ControlServer(ControlService(engine), tmp_path / "control.sock")
        await server.start()
        try:
            yield server
        finally:
            await server.close()


async def raw_request(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), PATIENCE_S))
        assert await asyncio.wait_for(reader.read(), PATIENCE_S) == b"", "a refused client must be disconnected"
    finally:
        writer.close()
    assert isinstance(reply, dict)
    return reply


async def test_the_control_socket_serves_only_clients_holding_the_engine_token(control_server: ControlServer) -> None:
    token_file = control_server.token_path
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    for request in ({"op": "list", "args": {}}, {"op": "list", "args": {}, "token": "0" * 64}):
        reply = await raw_request(control_server.path, request)
        assert reply["ok"] is False and reply["refused"] is True, reply
        assert "token" in reply["error"]
    assert await call_owner(control_server.path, "list", {}) == []  # the CLI's client reads the token file
    await control_server.close()
    assert not token_file.exists(), "a closed engine's token must not linger"


#: A client any task could write: reads the token (same user in plain mode) and asks for the workflow list.
CLIENT = """
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["SOCK"])
s.sendall(json.dumps({"op": "list", "args": {}, "token": open(os.environ["TOKEN"]).read()}).encode() + b"\\n")
print(s.makefile().readline().strip(), flush=True)
"""

ESCAPES = {
    "as-is": "python3 client.py",
    # A new session and an environment without the sandbox's marker: the shell that started it is still its parent.
    "new-session-clean-env": f"env -i SOCK=$SOCK TOKEN=$TOKEN {shutil.which('setsid')} -w /usr/bin/python3 client.py",
    # Orphaned too (the subshell exits at once): only the task cgroup still says where it comes from.
    "orphaned-new-session-clean-env": (
        f"(env -i SOCK=$SOCK TOKEN=$TOKEN {shutil.which('setsid')} /usr/bin/python3 client.py > reply.txt &); "
        "while [ ! -s reply.txt ]; do sleep 0.05; done; cat reply.txt"
    ),
}


@pytest.mark.parametrize("escape", list(ESCAPES))
async def test_a_plain_mode_task_holding_the_token_is_still_refused(
    control_server: ControlServer, tmp_path: Path, escape: str, trial: str
) -> None:
    if escape.startswith("orphaned"):
        require_cgroup("pids")  # any task cgroup would do; without one this escape is not recognised (README)
    sandbox = LocalSandbox(tmp_path / "task", use_bwrap=False)
    await sandbox.write_file("client.py", textwrap.dedent(CLIENT))
    transcript = Transcript()
    env = {"SOCK": str(control_server.path), "TOKEN": str(control_server.token_path), TRIAL_ENV: trial}
    result = await sandbox.run(ESCAPES[escape], on_output=transcript, env=env, timeout=PATIENCE_S)
    await sandbox.close()
    assert result.exit_code == 0, transcript.lines
    reply = json.loads(transcript.text()[-1])
    assert reply["ok"] is False and reply["refused"] is True, reply
    assert "sandbox" in reply["error"]


#: The counting workflow of the CLI tests, running on the default database.
counting = test_cli_engine.counting


def test_the_cli_without_the_token_is_refused_with_exit_3(counting: CountingRun) -> None:
    database = Path(counting.env["XDG_DATA_HOME"]) / "agentdeck" / "state.db"
    socket_path = control_socket_path(f"surrealkv://{database}")
    assert socket_path is not None and socket_path.exists()
    token = control_token_path(socket_path)
    aside = token.with_name(token.name + ".aside")
    token.rename(aside)
    try:
        refused = agentdeck("workflows", "list", "--json", env=counting.env)
    finally:
        aside.rename(token)
    assert refused.returncode == 3, refused.stderr
    assert "refused" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stdout == ""
    served = agentdeck("workflows", "list", "--json", env=counting.env)
    assert served.returncode == 0, served.stderr
    assert counting.workflow in {row["id"] for row in json.loads(served.stdout)}


async def test_malformed_requests_get_an_answer_and_a_write_through_query_is_refused(
    control_server: ControlServer,
) -> None:
    """A client with the token that sends nonsense gets an error at once (not a silence until it gives up), and
    the query an attached dashboard may send is read-only in fact, a write nested in a subquery included."""
    token = read_token(control_server.path)
    reader, writer = await asyncio.open_unix_connection(str(control_server.path))
    engine = control_server.service.engine

    async def ask(request: dict[str, Any]) -> dict[str, Any]:
        writer.write(json.dumps({**request, "token": token}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), PATIENCE_S))
        assert isinstance(reply, dict)
        return reply

    try:
        assert (await ask({"id": 1, "op": "list", "args": [1]}))["error"] == "args must be a JSON object"
        assert "id" in (await ask({"id": [1], "op": "list"}))["error"]
        assert "stream needs an id" in (await ask({"op": "events"}))["error"]
        write = engine.db.prepare("RETURN (CREATE workflow:sneaky SET name = 'x')").frame
        assert write is not None
        refused = await ask({"id": 2, "op": "query", "args": {"frame": base64.b64encode(write).decode()}})
        assert refused["ok"] is False and "only reads" in refused["error"]
        assert await engine.db.query_one("SELECT * FROM workflow:sneaky") == []
        assert (await ask({"id": 3, "op": "runs"}))["ok"] is True, "the connection still serves"
    finally:
        writer.close()
