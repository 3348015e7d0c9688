"""Sandbox hardening (issue 9, point 6), attacked with real bubblewrap, real cgroups and real processes.

- A task cannot see the engine's database, control socket or other tasks' directories (bwrap), through the real
  ``agentdeck run``.
- The control socket refuses clients without the engine's token, and sandboxed clients even with it.
- Memory and the number of processes are limited per task, not per process.

``test_hardening_crash.py`` kills engines while they start tasks. Every test that starts processes marks them with
a unique environment variable and kills whatever carries it when it ends, so a failure never leaves a fork bomb or
a sleeper behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import stat
import subprocess
import tempfile
import textwrap
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from db import connect
from db.models import Event
from engine.control import ControlServer, ControlService, call_owner
from engine.engine import Engine
from engine.events import output_lines
from engine.sandbox import Limits, LocalSandbox, cgroup_support
from tests.integration.sandbox_conformance import PATIENCE_S, Transcript, eventually
from tests.integration.test_cli_engine import AGENTDECK, clean_env, json_lines
from tests.integration.test_sandbox import LOCAL_MODES, local_factory, require_bwrap

#: The variable every test process carries, so the test can find (and clean up) all of them.
TRIAL_ENV = "AGENTDECK_TEST_TRIAL"


def carrying(trial: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment has ``TRIAL_ENV=trial``, wherever they are."""
    needle = f"\0{TRIAL_ENV}={trial}\0".encode()
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            with open(f"/proc/{proc.pid}/environ", "rb") as raw:
                environ = b"\0" + raw.read()
            if needle in environ and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def kill_all(trial: str) -> None:
    """Cleanup: SIGKILL every process of the trial until none is left (a fork bomb included)."""
    deadline = time.monotonic() + PATIENCE_S
    while (procs := carrying(trial)) and time.monotonic() < deadline:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=1)


@pytest.fixture
def trial() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    kill_all(name)


def require_cgroup(controller: str) -> None:
    """Skip, loudly, when this machine gives us no cgroup that can limit ``controller``."""
    support = cgroup_support()
    if support is None or not support.limits(controller):
        reason = f"no cgroup with the {controller} controller can be created here ({support and support.describe()})"
        warnings.warn(f"per-task {controller} limit NOT tested: {reason}", UserWarning, stacklevel=2)
        pytest.skip(reason)


# -- what a task can see (bwrap, through the real command line) ------------------------------------------------------


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory outside /tmp: bubblewrap replaces the host's /tmp anyway, which would prove nothing."""
    path = Path(tempfile.mkdtemp(prefix="agentdeck-hardening-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


PROBE_WORKFLOW = """
name: hardening-probe
agents:
  sh: {kind: shell}
tasks:
  - id: sibling
    agent: sh
    run: 'echo sibling-secret > secret.txt'
  - id: upstream
    agent: sh
    depends_on: [sibling]
    run: 'echo upstream-data > data.txt'
  - id: probe
    agent: sh
    depends_on: [upstream]
    run: |
      for p in ../../../state.db ../../../state.db.control.sock ../sibling/secret.txt; do
        if test -e "$p"; then echo "sees $p"; else echo "hidden $p"; fi
      done
      cat ../upstream/data.txt
      touch ../upstream/x 2>/dev/null && echo "upstream writable" || echo "upstream read-only"
      touch mine.txt && echo "own writable"
      echo "data dir: $(ls -A ../../.. | tr '\\n' ' ')"
      python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('../../../state.db.control.sock')" \\
        2>/dev/null && echo "socket reached" || echo "socket unreachable"
"""


def test_a_task_sees_neither_the_database_nor_the_socket_nor_other_tasks(tmp_path: Path, data_dir: Path) -> None:
    require_bwrap()
    workflow = tmp_path / "probe.yaml"
    workflow.write_text(PROBE_WORKFLOW)
    db = f"surrealkv://{data_dir / 'state.db'}"
    done = subprocess.run(
        [AGENTDECK, "run", str(workflow), "--db", db, "--headless", "--json", "--var", "secret=hunter2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    seen = [
        line
        for event in json_lines(done.stdout)
        if event["type"] == "task.output" and event["task"] == "probe"
        for line in output_lines(Event.model_validate(event))
    ]
    assert seen == [
        "hidden ../../../state.db",
        "hidden ../../../state.db.control.sock",
        "hidden ../sibling/secret.txt",
        "upstream-data",
        "upstream read-only",
        "own writable",
        "data dir: state.db.work ",
        "socket unreachable",
    ]
    assert (data_dir / "state.db.work").is_dir(), "the task directories are where the probe looked"


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


# -- per-task limits --------------------------------------------------------------------------------------------------

#: Four children of 120 MB each, one after the other, each holding its memory until the test says go.
MEMORY_HOG = """
import os, time
for i in range(4):
    r, w = os.pipe()
    if os.fork() == 0:
        block = bytearray(120 * 2**20)
        for j in range(0, len(block), 4096):
            block[j] = 1
        os.write(w, b"x")
        while not os.path.exists("go"):
            time.sleep(0.05)
        os._exit(0)
    os.close(w)
    print(f"child {i}", "holds" if os.read(r, 1) else "died", flush=True)
print("settled", flush=True)
while not os.path.exists("go"):
    time.sleep(0.05)
"""


def resident_mb(sandbox: LocalSandbox) -> float:
    total = 0
    for pid in sandbox.pids():
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


@pytest.mark.parametrize("mode", LOCAL_MODES)
async def test_memory_is_limited_per_task_not_per_process(mode: str, tmp_path: Path, trial: str) -> None:
    require_cgroup("memory")
    sandbox = local_factory(mode, limits=Limits(memory_mb=300))(tmp_path / "task")
    assert isinstance(sandbox, LocalSandbox)
    await sandbox.write_file("hog.py", textwrap.dedent(MEMORY_HOG))
    transcript = Transcript()
    run = asyncio.create_task(sandbox.run("python3 hog.py", on_output=transcript, env={TRIAL_ENV: trial}))
    try:
        await transcript.wait_for_line("settled")
        # 4 x 120 MB, each well within its own 4 GB address space: only a limit on the task as a whole makes them fit
        # (the OOM killer ends some). Its victims may take a moment to let go of their memory: look until it fits.
        await eventually(lambda: resident_mb(sandbox) <= 300, "the task's processes to fit in its 300 MB")
        await sandbox.write_file("go", "")
        assert (await asyncio.wait_for(run, PATIENCE_S)).exit_code == 0
    finally:
        await sandbox.close()


#: A fork bomb with a bound: up to 300 children that sleep until killed; says how many it got.
FORK_BOMB = """
import os, time
made = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(1000)
        os._exit(0)
    made += 1
print("made", made, flush=True)
"""


@pytest.mark.parametrize("mode", LOCAL_MODES)
async def test_a_fork_bomb_is_limited_per_task(mode: str, tmp_path: Path, trial: str) -> None:
    require_cgroup("pids")
    sandbox = local_factory(mode, limits=Limits(processes=40))(tmp_path / "task")
    assert isinstance(sandbox, LocalSandbox)
    await sandbox.write_file("bomb.py", textwrap.dedent(FORK_BOMB))
    transcript = Transcript()
    try:
        result = await sandbox.run("python3 bomb.py", on_output=transcript, env={TRIAL_ENV: trial}, timeout=PATIENCE_S)
    finally:
        await sandbox.close()
    assert result.exit_code == 0, transcript.lines
    made = int(transcript.text()[-1].split()[1])
    assert 0 < made < 40, f"the bomb got {made} processes with a limit of 40"
    assert carrying(trial) == [], "the bomb's children outlived the run"
