"""Sandbox hardening (issue 9, point 6), attacked with real bubblewrap, real cgroups and real processes.

- A task cannot see the engine's database, control socket or other tasks' directories (bwrap), through the real
  ``agentdeck run``.
- Memory and the number of processes are limited per task, not per process.

``test_hardening_socket.py`` attacks the control socket, ``test_hardening_crash.py`` kills engines while they
start tasks. Every test that starts processes marks them with
a unique environment variable and kills whatever carries it when it ends, so a failure never leaves a fork bomb or
a sleeper behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from db.models import Event
from engine.events import output_lines
from engine.private_paths import hidden_from_sandboxes, runtime_dir
from engine.sandbox import Limits, LocalSandbox, cgroup_support
from engine.sandbox._isolation import _bwrap_argv
from tests.conformance.sandbox.suite import PATIENCE_S, Transcript
from tests.conformance.sandbox.test_local_sandbox import LOCAL_MODES, local_factory, require_bwrap
from tests.integration.test_cli_engine import AGENTDECK, clean_env, json_lines
from tests.support.polling import until

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


async def test_bwrap_masks_hidden_paths_and_binds_back_the_task_and_its_inputs(data_dir: Path) -> None:
    """The sandbox on its own: a hidden directory (with a socket in it), a hidden socket elsewhere, and the
    task's directory and an upstream one inside the hidden directory."""
    require_bwrap()
    hidden, elsewhere = data_dir / "engine", data_dir / "elsewhere"
    for directory in (hidden / "work" / "mine", hidden / "work" / "upstream", hidden / "work" / "other", elsewhere):
        directory.mkdir(parents=True)
    (hidden / "work" / "upstream" / "data.txt").write_text("upstream-data")
    (hidden / "work" / "other" / "secret.txt").write_text("other-secret")
    (hidden / "db.txt").write_text("db")
    listening = []
    for path in (hidden / "engine.sock", elsewhere / "engine.sock"):
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.listen()
        listening.append(server)
    sandbox = LocalSandbox(hidden / "work" / "mine", use_bwrap=True, hidden=[hidden, elsewhere / "engine.sock"])
    transcript = Transcript()
    connect = 'python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"'
    try:
        result = await sandbox.run(
            f"ls -A {hidden} | tr '\\n' ' '; echo; ls -A {hidden}/work | tr '\\n' ' '; echo; "
            f"cat {hidden}/work/upstream/data.txt; echo; "
            f"touch {hidden}/work/upstream/x 2>/dev/null && echo upstream-writable || echo upstream-read-only; "
            f"touch {hidden}/new 2>/dev/null && echo mask-writable || echo mask-read-only; "
            "touch mine.txt && echo own-writable; "
            f"{connect} {elsewhere}/engine.sock 2>/dev/null && echo socket-reached || echo socket-unreachable",
            on_output=transcript,
            readable=[hidden / "work" / "upstream"],
        )
    finally:
        await sandbox.close()
        for server in listening:
            server.close()
    assert result.exit_code == 0, transcript.lines
    assert transcript.text() == [
        "work ",
        "mine upstream ",
        "upstream-data",
        "upstream-read-only",
        "mask-read-only",
        "own-writable",
        "socket-unreachable",
    ]
    assert (hidden / "work" / "mine" / "mine.txt").exists()


def test_what_the_engine_hides_from_its_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database's directory whole - unless it holds your home or working directory, then its entries."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    own = tmp_path / "data" / "state.db"
    always = {tmp_path / "xdg" / "agentdeck", runtime_dir(), tmp_path / "work"}
    hidden = set(hidden_from_sandboxes(f"surrealkv://{own}", tmp_path / "work"))
    assert hidden == always | {own.parent, Path(f"{own}.control.sock")}
    own.parent.mkdir()
    monkeypatch.chdir(own.parent)
    hidden = set(hidden_from_sandboxes(f"surrealkv://{own}", tmp_path / "work"))
    assert hidden == always | {own, Path(f"{own}.control.sock")}, "the working directory must stay visible"
    assert set(hidden_from_sandboxes("mem://", tmp_path / "work")) == always


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
        await until(
            lambda: resident_mb(sandbox) <= 300, "the task's processes to fit in its 300 MB", limit_s=PATIENCE_S
        )
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


#: Runs alone in the cgroup given as argv[1], then asks for controller argv[2] for its children; prints the outcome.
DELEGATE = """
import sys
from pathlib import Path
from engine.sandbox._cgroup import _enable_for_children
base, controller = Path(sys.argv[1]), sys.argv[2]
(base / "cgroup.procs").write_text("0")
print(sorted(_enable_for_children(base, {controller, "not-a-controller"})), flush=True)
print(Path("/proc/self/cgroup").read_text().splitlines()[-1], flush=True)
sys.stdin.readline()
"""


def test_an_engine_alone_in_its_v2_cgroup_moves_into_a_leaf_to_limit_its_tasks(tmp_path: Path) -> None:
    """cgroup v2 enables controllers for children only in a cgroup without processes (memory and pids are v1 here,
    so this runs with a controller the v2 hierarchy has): alone, the engine moves aside; not alone, nothing moves."""
    info = Path("/proc/self/mountinfo").read_text().splitlines()
    mounts = [line.split()[4] for line in info if " - cgroup2 " in line]
    root = Path(mounts[0]) if mounts else None
    available = (root / "cgroup.controllers").read_text().split() if root else []
    if root is None or not available or os.getuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy with a controller to delegate")
    controller = available[0]
    was_enabled = controller in (root / "cgroup.subtree_control").read_text().split()
    alone, shared = (root / f"agentdeck-test-{uuid.uuid4().hex[:12]}" for _ in range(2))
    started: list[subprocess.Popen[str]] = []

    def engine(base: Path) -> tuple[str, str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", DELEGATE, str(base), controller],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        started.append(proc)
        assert proc.stdout is not None
        return proc.stdout.readline().strip(), proc.stdout.readline().strip()

    try:
        (root / "cgroup.subtree_control").write_text(f"+{controller}")  # so that our cgroups have it to give
        alone.mkdir()
        shared.mkdir()
        assert engine(alone) == (f"[{controller!r}]", f"0::/{alone.name}/agentdeck-engine")
        assert controller in (alone / "cgroup.subtree_control").read_text().split()
        neighbour = subprocess.Popen(["sleep", "1000"])
        started.append(neighbour)  # type: ignore[arg-type]  # only killed and waited for
        (shared / "cgroup.procs").write_text(str(neighbour.pid))
        assert engine(shared) == ("[]", f"0::/{shared.name}")
        assert (shared / "cgroup.subtree_control").read_text().split() == []
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
        for directory in (alone / "agentdeck-engine", alone, shared):
            with contextlib.suppress(OSError):
                directory.rmdir()
        if not was_enabled:
            with contextlib.suppress(OSError):
                (root / "cgroup.subtree_control").write_text(f"-{controller}")


def test_an_installation_under_tmp_stays_visible_to_tasks_and_what_is_hidden_inside_it_does_not() -> None:
    """A checkout under /tmp (CI's clean clone, a user's /tmp/agentdeck): the sandbox's private /tmp hid its
    ``.venv`` — ``ruff`` and ``python`` were gone and the demo's lint retry disappeared. The interpreter's
    installation is bound back read-only; a hidden path inside it stays hidden."""
    require_bwrap()
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    installation, work = Path(tempfile.mkdtemp(dir="/tmp")), Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        tool = installation / "bin" / "tool"
        tool.parent.mkdir()
        tool.write_text("#!/bin/sh\necho tool ran\n")
        tool.chmod(0o755)
        secret = installation / "state.db"
        secret.write_text("the database")
        command = (
            f"{tool} 2>/dev/null || echo tool-missing; cat {secret} 2>/dev/null | grep -q database && echo db-seen "
            f"|| echo db-hidden; touch {installation}/x 2>/dev/null && echo writable || echo read-only"
        )

        def run(installed: list[Path]) -> list[str]:
            argv = _bwrap_argv(bwrap, work, command, network=False, hidden=[secret], installed=installed)
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.split()

        assert run([installation]) == ["tool", "ran", "db-hidden", "read-only"]
        assert run([])[0] == "tool-missing", "without the bind the private /tmp hides it (what the demo lost)"
    finally:
        shutil.rmtree(installation)
        shutil.rmtree(work)
