"""Nothing of a task outlives its engine: SIGKILL at a random moment of the task's start (fork, preexec, bwrap's
mount setup, the shell's first forks), in both sandbox modes, with and without a task cgroup - 50 trials each with
``-m slow``, a few in the default run. And a resumed task never runs beside what a killed engine left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.sandbox import LocalSandbox
from engine.sandbox._leftovers import RunRecord, records_of
from tests.conformance.sandbox.suite import PATIENCE_S, WAIT_FOR_GO, Transcript
from tests.conformance.sandbox.test_local_sandbox import LOCAL_MODES, require_bwrap
from tests.integration.test_hardening import TRIAL_ENV, carrying, kill_all


@pytest.fixture
def trial() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    kill_all(name)


def commands_of(procs: list[psutil.Process]) -> list[str]:
    """The sorted command lines of those of ``procs`` that still live."""
    commands = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            commands.append(" ".join(proc.cmdline()))
    return sorted(commands)


def wait_until_gone(trial: str, limit_s: float = PATIENCE_S) -> list[str]:
    """Wait until no process of the trial is alive; returns descriptions of what is still there at the limit."""
    deadline = time.monotonic() + limit_s
    while True:
        left = carrying(trial)
        if not left or time.monotonic() >= deadline:
            return commands_of(left)
        time.sleep(0.05)


# -- an engine killed while it starts a task ------------------------------------------------------------------------

#: What the killed "engine" runs: a background job, a daemon that leaves the session, and a foreground sleeper.
TASK = "sleep 1001 & (setsid sleep 1002 > /dev/null 2>&1 &); echo started; sleep 1003"

#: An engine in miniature: makes the sandbox, says so, and on a line from stdin runs TASK in it, printing its output.
ENGINE = """
import asyncio, sys
from pathlib import Path
from engine.sandbox import LocalSandbox

async def main() -> None:
    workdir, mode, cgroup, marker, trial, task = sys.argv[1:7]
    sandbox = LocalSandbox(Path(workdir), use_bwrap=mode == "bwrap", use_cgroup=None if cgroup == "auto" else False)
    print("ready", flush=True)
    sys.stdin.readline()
    await sandbox.run(task, env={marker: trial}, on_output=lambda stream, line: print(line, flush=True))

asyncio.run(main())
"""

CGROUP_MODES = ["auto", "off"]


class MiniEngine:
    """``ENGINE`` in a subprocess, with ``TASK`` about to start in ``workdir``."""

    def __init__(self, workdir: Path, mode: str, cgroup: str, trial: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENGINE, str(workdir), mode, cgroup, TRIAL_ENV, trial, TASK],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdout, self.stdin = self.proc.stdout, self.proc.stdin
        assert self.stdout.readline() == "ready\n"

    def start_task(self) -> None:
        self.stdin.write("go\n")
        self.stdin.flush()

    def watchdog(self) -> psutil.Process:
        """The engine's sandbox watchdog (it starts with the first task)."""
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            for child in psutil.Process(self.proc.pid).children():
                if "_watchdog" in " ".join(child.cmdline()):
                    return child
            time.sleep(0.01)
        pytest.fail("the engine started no watchdog")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=PATIENCE_S)


def engine_kill_trials(tmp_path: Path, mode: str, cgroup: str, trials: int) -> None:
    """SIGKILL the engine at a random moment of the task's start; nothing of the task may survive it."""
    if mode == "bwrap":
        require_bwrap()
    failures = []
    for number in range(trials):
        trial = uuid.uuid4().hex
        delay = random.uniform(0, 0.15)
        try:
            engine = MiniEngine(tmp_path / f"trial-{number}", mode, cgroup, trial)
            try:
                engine.start_task()
                # The one deliberate sleep: the kill must land at a random moment of the task's start (fork,
                # preexec, bwrap's mount setup, the shell's first forks), which no condition can pick for us.
                time.sleep(delay)
            finally:
                engine.kill()
            left = wait_until_gone(trial)
            if left:
                failures.append(f"trial {number} (killed after {delay * 1000:.0f} ms): {left}")
        finally:
            kill_all(trial)
    assert failures == [], f"{len(failures)}/{trials} trials left processes running:\n" + "\n".join(failures)


@pytest.mark.parametrize("cgroup", CGROUP_MODES)
@pytest.mark.parametrize("mode", LOCAL_MODES)
def test_nothing_of_a_task_outlives_an_engine_killed_while_starting_it(tmp_path: Path, mode: str, cgroup: str) -> None:
    engine_kill_trials(tmp_path, mode, cgroup, trials=3)


@pytest.mark.slow
@pytest.mark.parametrize("cgroup", CGROUP_MODES)
@pytest.mark.parametrize("mode", LOCAL_MODES)
def test_nothing_of_a_task_outlives_an_engine_killed_while_starting_it_50_trials(
    tmp_path: Path, mode: str, cgroup: str
) -> None:
    engine_kill_trials(tmp_path, mode, cgroup, trials=50)


@pytest.mark.parametrize("cgroup", CGROUP_MODES)
def test_a_resumed_task_first_kills_what_the_dead_engine_left(tmp_path: Path, cgroup: str, trial: str) -> None:
    """Engine and watchdog both killed (say, by the OOM killer): the plain-mode shell dies with the engine, its
    children do not. The next sandbox on the task's directory - the resumed task - kills them before it runs."""
    engine = MiniEngine(tmp_path / "task", "plain", cgroup, trial)
    try:
        engine.start_task()
        assert engine.stdout.readline() == "started\n"
        watchdog = engine.watchdog()
        watchdog.kill()
        # A zombie until the engine's end hands it to init: dead enough, it reads nothing any more.
        deadline = time.monotonic() + PATIENCE_S
        while watchdog.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        engine.kill()
    # The shell dies with the engine (its parent-death signal), a moment later: wait for exactly its children.
    survivors = ["sleep 1001", "sleep 1002", "sleep 1003"]
    deadline = time.monotonic() + PATIENCE_S
    while (names := commands_of(carrying(trial))) != survivors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert names == survivors, "the setup did not leave the expected survivors"
    LocalSandbox(tmp_path / "task", use_bwrap=False, use_cgroup=None if cgroup == "auto" else False)
    assert carrying(trial) == []


def test_a_reused_pid_in_a_run_record_is_not_killed(tmp_path: Path) -> None:
    """The record names this test's own process with a wrong start time: a pid that was reused since."""
    bystander = subprocess.Popen(["sleep", "1000"])
    try:
        workdir = tmp_path / "task"
        workdir.mkdir()
        record = RunRecord(workdir, pids={bystander.pid: time.time() - 3600})
        record.save()
        LocalSandbox(workdir, use_bwrap=False)
        assert bystander.poll() is None, "a process that merely reuses a recorded pid was killed"
        assert records_of(workdir) == [], "the stale record should be gone once reaped"
    finally:
        bystander.kill()
        bystander.wait()


async def test_a_second_sandbox_on_a_running_task_directory_leaves_the_live_run_alone(tmp_path: Path) -> None:
    """A resume while the cancelled run is still being stopped makes a new sandbox on the same directory in the
    same engine: the live run is not a leftover to reap, and each run keeps its own record."""
    first = LocalSandbox(tmp_path / "task", use_bwrap=False)
    transcript = Transcript()
    run = asyncio.create_task(first.run(f"echo started; {WAIT_FOR_GO}; echo done", on_output=transcript))
    try:
        await transcript.wait_for_line("started")
        second = LocalSandbox(tmp_path / "task", use_bwrap=False)
        assert first.running and first.pids(), "making the second sandbox killed the first one's command"
        assert (await second.run("echo second")).exit_code == 0
        assert len(records_of(tmp_path / "task")) == 1, "the first run's record must outlive the second run"
        await first.write_file("go", "")
        assert (await asyncio.wait_for(run, PATIENCE_S)).exit_code == 0
        assert transcript.text() == ["started", "done"]
        assert records_of(tmp_path / "task") == []
    finally:
        await first.close()
