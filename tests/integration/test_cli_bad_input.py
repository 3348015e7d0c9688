"""Bad input through the real ``agentdeck`` command: one clear line, exit 2, never a traceback or a hang.

Hostile workflow files, broken Python step modules, bad ``AGENTDECK_*`` settings and database URLs, passwords that
must never be printed, and Ctrl-C while a big file is checked or a big workflow runs (exit 130).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty, Queue

import pytest

from tests.integration.test_cli_foundation import AGENTDECK, agentdeck

QUICKSTART = str(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")


def chain(n: int, *, fan_in: bool = False) -> str:
    """A workflow of ``n`` shell tasks: a chain (each depends on the one before) or a fan-in (the last on all)."""
    lines = ["name: big", "agents:", "  a: {kind: shell}", "tasks:"]
    for i in range(n):
        deps = f"t{i - 1}" if i and not fan_in else ""
        lines.append(f"  - {{id: t{i}, agent: a, run: 'true', depends_on: [{deps}]}}")
    if fan_in:
        lines[-1] = (
            f"  - {{id: t{n - 1}, agent: a, run: 'true', depends_on: [{', '.join(f't{j}' for j in range(n - 1))}]}}"
        )
    return "\n".join(lines) + "\n"


def one_line_error(result: subprocess.CompletedProcess[str], starts: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


# -- big files ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fan_in", [False, True], ids=["chain", "fan-in"])
def test_a_50000_task_workflow_validates(tmp_path: Path, fan_in: bool) -> None:
    # Cycle detection was quadratic: 50,000 tasks did not finish in 15 minutes. The timeout is a ceiling only.
    path = tmp_path / "big.yaml"
    path.write_text(chain(50_000, fan_in=fan_in))
    result = agentdeck("validate", str(path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "50000 tasks" in result.stdout


# -- hostile files --------------------------------------------------------------------------------------------------


def alias_bomb(path: Path) -> None:
    lines = ["name: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path.write_text("\n".join([*lines, "tasks: [{id: a, agent: s}]"]) + "\n")


def deep(path: Path) -> None:
    path.write_text("name: deep\ntasks:\n  - id: a\n    input: " + "[" * 250 + "]" * 250 + "\n")


def huge(path: Path) -> None:
    with path.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse


HOSTILE: dict[str, tuple[Callable[[Path], object], str]] = {
    "alias bomb": (alias_bomb, ":8: aliases expand to more than 1,000,000 values (the limit)"),
    "dev zero": (lambda p: p.symlink_to("/dev/zero"), ": is a character device, not a regular file"),
    "fifo": (lambda p: os.mkfifo(p), ": is a FIFO (named pipe), not a regular file"),
    "huge": (huge, ": the file is 67,108,864 bytes; workflow files are limited to 10 MiB"),
    "250 deep": (deep, ":4: nested more than 100 levels deep (the limit)"),
    "not utf-8": (lambda p: p.write_bytes(b"name: caf\xe9\n"), ":1: the file is not UTF-8 text"),
    "binary": (lambda p: p.write_bytes(bytes(range(256)) * 64), ":2: the file is not UTF-8 text"),
    "empty": (lambda p: p.write_text(""), ":1: the file is empty"),
    "two documents": (lambda p: p.write_text("name: a\n---\nname: b\n"), ":2: a second YAML document"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    make, message = HOSTILE[case]
    path = tmp_path / "wf.yaml"
    make(path)
    for command in (["validate", str(path)], ["run", str(path), "--headless", "--db", "mem://"]):
        line = one_line_error(agentdeck(*command, timeout=60), str(path))
        assert line.startswith(f"{path}{message}"), line


# -- python steps that do not import ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, where, problem",
    [
        ("def step(ctx:\n    return 1\n", 1, "SyntaxError: "),
        ("import json\n\nraise RuntimeError('no config\\nfound')\n\ndef step(ctx):\n    return 1\n", 3,
         "RuntimeError: no config; found"),
    ],
)  # fmt: skip
def test_a_step_module_that_cannot_import_names_its_file_and_line(
    tmp_path: Path, source: str, where: int, problem: str
) -> None:
    module = tmp_path / "broken_steps.py"
    module.write_text(source)
    path = tmp_path / "wf.yaml"
    path.write_text(
        'name: w\nagents:\n  p: {kind: python, callable: "broken_steps:step"}\ntasks: [{id: a, agent: p}]\n'
    )
    for command in (["validate", str(path)], ["run", str(path), "--headless", "--db", "mem://"]):
        line = one_line_error(agentdeck(*command), f"{path}: agent 'p': {module}:{where}: ")
        assert f"cannot import 'broken_steps': {problem}" in line


# -- settings and database URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, args, message",
    [
        ({"AGENTDECK_SANDBOX": "docker"}, ["run", QUICKSTART, "--headless", "--db", "mem://"],
         "agentdeck: AGENTDECK_SANDBOX='docker': input should be 'local', 'e2b' or 'worker'"),
        ({"AGENTDECK_E2B_SCOPE": "everything"}, ["run", QUICKSTART, "--headless", "--db", "mem://"],
         "agentdeck: AGENTDECK_E2B_SCOPE='everything': input should be 'task' or 'agent'"),
        ({"AGENTDECK_EMBEDDING_DIMENSION": "many"}, ["workflows", "list", "--db", "mem://"],
         "agentdeck: AGENTDECK_EMBEDDING_DIMENSION='many': input should be a valid integer"),
        ({"AGENTDECK_EMBEDDING_DIMENSION": "0"}, ["run", QUICKSTART, "--headless", "--db", "mem://"],
         "agentdeck: AGENTDECK_EMBEDDING_DIMENSION='0': input should be greater than or equal to 1"),
        ({}, ["workflows", "list", "--db", ""], "agentdeck: --db: the database URL is empty"),
        ({}, ["run", QUICKSTART, "--headless", "--db", "surrealkv://"],
         "agentdeck: --db: the database URL 'surrealkv://' has no path"),
        ({}, ["workflows", "list", "--db", "bogus://nowhere"], "agentdeck: --db: unsupported database URL"),
        ({"AGENTDECK_DB": ""}, ["run", QUICKSTART, "--headless"], "agentdeck: AGENTDECK_DB: the database URL is empty"),
        ({"AGENTDECK_DB": "surrealkv://"}, ["workflows", "list"], "agentdeck: the database URL 'surrealkv://' has no"),
    ],
)  # fmt: skip
def test_a_bad_setting_or_database_url_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = subprocess.run(
        [AGENTDECK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), **env},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len([line for line in result.stderr.splitlines() if not line.startswith("  hint:")]) == 1
    assert not (tmp_path / "data").exists(), "fell back to the default database"
    assert not list(workdir.iterdir()), "opened a database in the working directory"


@pytest.mark.parametrize(
    "args, env",
    [
        (["workflows", "list", "--db", "ws://admin:hunter2-S3cret@127.0.0.1:9/rpc"], {}),
        (["workflows", "list"], {"AGENTDECK_DB": "ws://admin:hunter2-S3cret@127.0.0.1:9"}),
        (["run", QUICKSTART, "--headless", "--db", "wss://admin:hunter2-S3cret@127.0.0.1:9"], {}),
        (["workflows", "list", "--db", "http://admin:hunter2-S3cret@example.invalid"], {}),
        (["workflows", "list", "--db", "ws://admin:hunter2-S3cret@"], {}),
        (["workflows", "list", "--db", "ws://admin:hunter2%2DS3cret@127.0.0.1:9"], {}),
        (["workflows", "list", "--db", "mem://"], {"AGENTDECK_EMBEDDING_DIMENSION": "x",
                                                   "AGENTDECK_DB_PASS": "hunter2-S3cret"}),
    ],
)  # fmt: skip
def test_a_password_in_a_database_url_is_never_printed(args: list[str], env: dict[str, str]) -> None:
    result = agentdeck(*args, env=env)
    assert result.returncode in (2, 3), result.stderr
    assert "Traceback" not in result.stderr
    for secret in ("hunter2-S3cret", "hunter2%2DS3cret"):
        assert secret not in result.stderr and secret not in result.stdout


# -- Ctrl-C -------------------------------------------------------------------------------------------------------


class Running:
    """An ``agentdeck`` process whose stdout and stderr lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [AGENTDECK, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200"},
            # As a terminal would start it: pytest launched in the background (`cmd &` without job control)
            # ignores SIGINT, and a child inherits that, so a Ctrl-C would be lost and the process run to its end.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: Queue[tuple[str, str]] = Queue()
        self.stderr: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in ("stdout", "stderr")]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.process, name)
        for line in stream:
            if name == "stderr":
                self.stderr.append(line)
            self.lines.put((name, line))

    def wait_for(self, stream: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                name, line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                break
            if name == stream and text in line:
                return
        raise AssertionError(f"no {text!r} on {stream} within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C, and the exit code once the process ends (it must end within ``timeout`` seconds)."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for reader in self.readers:  # they end at end of file, now that the process is gone
                reader.join(timeout=10)


def test_ctrl_c_while_a_huge_file_is_checked_exits_130(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    text = chain(160_000)  # just under the 10 MiB limit: several seconds of checking
    assert len(text) < 10 * 1024 * 1024
    path.write_text(text)
    running = Running("validate", str(path), cwd=tmp_path)
    running.wait_for("stderr", "agentdeck: checking", timeout=60)
    # Generous: what is tested is the exit code and the message, on a machine however busy.
    code = running.interrupt(timeout=180)
    assert code == 130, "".join(running.stderr)
    assert "Traceback" not in "".join(running.stderr)
    assert running.stderr[-1] == "agentdeck: interrupted\n"


@pytest.mark.parametrize("when", ["checking", "running"])
def test_ctrl_c_on_a_headless_run_of_2000_tasks_exits_130(tmp_path: Path, when: str) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain(2_000) + "#" * (1024 * 1024) + "\n")  # padded past the size that is announced
    running = Running("run", str(path), "--headless", "--json", "--db", f"surrealkv://{tmp_path / 'db'}", cwd=tmp_path)
    if when == "checking":  # before the workflow exists
        running.wait_for("stderr", "agentdeck: checking", timeout=60)
    else:
        running.wait_for("stdout", '"workflow.created"', timeout=120)
    code = running.interrupt(timeout=180)  # generous, as above
    assert code == 130, "".join(running.stderr)
    assert "Traceback" not in "".join(running.stderr)


def test_a_second_ctrl_c_exits_at_once_and_the_workflow_stays_resumable(tmp_path: Path) -> None:
    # The first task shrugs off SIGTERM, so the cancellation the first Ctrl-C starts takes the whole kill grace
    # period; the second Ctrl-C must not wait for it. The rest are Python steps, quick to resume.
    (tmp_path / "steps.py").write_text("async def noop(ctx):\n    return None\n")
    lines = [
        "name: stubborn",
        "agents:",
        "  sh: {kind: shell}",
        '  py: {kind: python, callable: "steps:noop"}',
        "tasks:",
        "  - {id: t0, agent: sh, run: \"trap '' TERM; echo holding; sleep 4\"}",
    ]
    lines += [f"  - {{id: t{i}, agent: py, depends_on: [t{i - 1}]}}" for i in range(1, 200)]
    path = tmp_path / "chain.yaml"
    path.write_text("\n".join(lines) + "\n")
    db = f"surrealkv://{tmp_path / 'db'}"
    running = Running("run", str(path), "--headless", "--json", "--db", db, cwd=tmp_path)
    running.wait_for("stdout", "holding", timeout=120)  # t0 runs, with SIGTERM ignored
    running.process.send_signal(signal.SIGINT)
    running.wait_for("stderr", "cancelling the workflow", timeout=60)
    code = running.interrupt(timeout=60)  # the second: the engine stores only the write under way
    stderr = "".join(running.stderr)
    assert code == 130, stderr
    assert "not waiting for the cancellation" in stderr
    assert "Traceback" not in stderr
    listed = subprocess.run(
        [AGENTDECK, "workflows", "list", "--json", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    (workflow,) = json.loads(listed.stdout)
    resumed = subprocess.run(
        [AGENTDECK, "resume", workflow["id"], "--headless", "--db", db],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr


@pytest.mark.slow  # creating 50,000 tasks takes the engine about a minute today (issue 9, point 1)
def test_ctrl_c_on_a_headless_run_of_50000_tasks_exits_130_promptly(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain(50_000))
    running = Running("run", str(path), "--headless", "--json", "--db", f"surrealkv://{tmp_path / 'db'}", cwd=tmp_path)
    running.wait_for("stdout", '"workflow.created"', timeout=300)
    code = running.interrupt(timeout=30)
    assert code == 130, "".join(running.stderr)
    assert "Traceback" not in "".join(running.stderr)
