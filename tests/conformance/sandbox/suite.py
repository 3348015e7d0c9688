"""The sandbox conformance suite: behaviour every ``engine.sandbox.Sandbox`` backend must show, with real processes.

Like the store suite (``tests/conformance/stores``), the checks are written once against the interface, in
a class pytest does not collect. A backend joins with a ``test_*.py`` module that subclasses
:class:`SandboxConformance` and provides two fixtures:

- ``sandbox_factory``: a :data:`SandboxFactory`, building a sandbox of that backend on a given working directory
  (called twice with the same path, it must give a sandbox that sees the same files: a task's retry);
- ``process_probe``: a :class:`ProcessProbe`, which can tell whether the processes a sandbox reported are still
  running (psutil for local processes; a backend with remote processes asks its remote side).

No check asserts on wall-clock durations. Where a check needs "the command is still running", the command waits
for a file the test writes, so the order of events is caused, not timed. Waits for a condition have generous
limits (:data:`PATIENCE_S`) and only fail when something is really stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from engine.sandbox import REDACTED, RunResult, Sandbox, SandboxBusy
from tests.support.polling import until

#: Builds a sandbox on a working directory.
SandboxFactory = Callable[[Path], Sandbox]

#: How long a check waits for something that normally takes milliseconds, before calling it stuck.
PATIENCE_S = 60.0

#: A loop printing 1, 2, 3, ... every 50 ms, forever.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"

#: Waits until the test creates the file ``go`` in the working directory.
WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.05; done"

#: Prints ``ready``, waits until the test creates the file ``go``, then prints ``done``.
GATED = f"echo ready; {WAIT_FOR_GO}; echo done"

#: Starts a background grandchild that outlives nothing: the shell waits for it, so only a kill ends the run.
TREE = "sleep 1000 & echo started; wait"


class ProcessProbe(Protocol):
    """What a backend tells the suite about the processes behind ``Sandbox.pids()``."""

    async def observe(self, sandbox: Sandbox) -> dict[int, str]:
        """The sandbox's current processes (``sandbox.pids()``) with their command lines.

        Remembers each process's identity, so that :meth:`survivors` is not fooled by a recycled pid.
        """
        ...

    async def survivors(self) -> list[str]:
        """Descriptions of every process observed so far that still runs (or is a zombie nobody reaps)."""
        ...


class Transcript:
    """Collects ``on_output`` lines and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))
        self._changed.set()

    def text(self, stream: str = "stdout") -> list[str]:
        return [line for name, line in self.lines if name == stream]

    async def wait_for(self, predicate: Callable[[list[str]], bool], what: str, stream: str = "stdout") -> None:
        async def wait() -> None:
            while not predicate(self.text(stream)):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), PATIENCE_S)
        except TimeoutError:
            pytest.fail(f"no {what} within {PATIENCE_S}s; output so far: {self.lines[-20:]}")

    async def wait_for_line(self, line: str, stream: str = "stdout") -> None:
        await self.wait_for(lambda lines: line in lines, f"line {line!r} on {stream}", stream)


def saw(seen: dict[int, str], command: str) -> Callable[[], bool]:
    """A condition: the watcher has seen a process whose whole command line is ``command``.

    Whole, not a substring: the shell running ``sleep 1000 & wait`` has "sleep 1000" in its own command line.
    """
    return lambda: command in seen.values()


@contextlib.asynccontextmanager
async def watching(sandbox: Sandbox, probe: ProcessProbe) -> AsyncIterator[dict[int, str]]:
    """Observe the sandbox's processes every 20 ms while the block runs; yields everything seen so far."""
    seen: dict[int, str] = {}

    async def watch() -> None:
        while True:
            for pid, command in (await probe.observe(sandbox)).items():
                # Keep the latest command line (a fork shows its parent's until it execs), but not the empty one
                # a dying process shows: keep what it ran while it lived.
                if command or pid not in seen:
                    seen[pid] = command
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def counts(lines: list[str]) -> list[int]:
    return [int(line) for line in lines]


class SandboxConformance:
    """Checks every sandbox backend must pass. Needs the ``sandbox_factory`` and ``process_probe`` fixtures."""

    @pytest.fixture
    async def sandbox(self, sandbox_factory: SandboxFactory, tmp_path: Path) -> AsyncIterator[Sandbox]:
        sandbox = sandbox_factory(tmp_path / "work")
        try:
            yield sandbox
        finally:
            await sandbox.close()

    def start(
        self, sandbox: Sandbox, command: str, transcript: Transcript, timeout: float | None = None
    ) -> asyncio.Task[RunResult]:
        """Run ``command`` in the background, collecting its output."""
        return asyncio.create_task(sandbox.run(command, on_output=transcript, timeout=timeout))

    async def assert_tree_gone(self, probe: ProcessProbe, seen: dict[int, str], expected: str) -> None:
        """The watcher saw the process ``expected`` (so the check is not vacuous), and nothing observed runs."""
        assert saw(seen, expected)(), f"never saw a process {expected!r} among {seen}"
        assert await probe.survivors() == [], "processes of the tree outlived the run"

    # -- output -----------------------------------------------------------------------------------------------------

    async def test_output_streams_while_the_command_runs(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        task = self.start(sandbox, GATED, transcript)
        await transcript.wait_for_line("ready")
        # The command cannot end before the test creates "go", so the first line arrived while it was running.
        assert not task.done()
        await sandbox.write_file("go", "")
        result = await asyncio.wait_for(task, PATIENCE_S)
        assert result.exit_code == 0
        assert transcript.text() == ["ready", "done"]

    async def test_stdout_and_stderr_are_told_apart(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        result = await sandbox.run("echo to-out; echo to-err >&2", on_output=transcript)
        assert result.exit_code == 0
        assert transcript.text("stdout") == ["to-out"]
        assert transcript.text("stderr") == ["to-err"]

    async def test_a_final_line_without_newline_is_delivered(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        await sandbox.run("printf 'first\\nlast'; printf 'partial' >&2", on_output=transcript)
        assert transcript.text("stdout") == ["first", "last"]
        assert transcript.text("stderr") == ["partial"]

    async def test_a_large_output_arrives_complete_and_in_order(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        result = await sandbox.run("seq 1 50000", on_output=transcript)
        assert result.exit_code == 0
        assert counts(transcript.text()) == list(range(1, 50001))

    async def test_runs_without_output_callback(self, sandbox: Sandbox) -> None:
        result = await sandbox.run("seq 1 50000; echo done >&2")
        assert result.exit_code == 0

    async def test_an_output_callback_that_raises_fails_the_run_and_stops_the_tree(
        self, sandbox: Sandbox, process_probe: ProcessProbe
    ) -> None:
        transcript = Transcript()

        def explode(stream: str, line: str) -> None:
            transcript(stream, line)
            if line == "boom":
                raise RuntimeError("callback broke")

        command = f"sleep 1000 & echo started; {WAIT_FOR_GO}; echo boom; wait"
        async with watching(sandbox, process_probe) as seen:
            task = asyncio.create_task(sandbox.run(command, on_output=explode))
            await transcript.wait_for_line("started")
            await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
            await sandbox.write_file("go", "")
            with pytest.raises(RuntimeError, match="callback broke"):
                await asyncio.wait_for(task, PATIENCE_S)
        assert not sandbox.running
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")

    # -- exit codes -------------------------------------------------------------------------------------------------

    @pytest.mark.parametrize(("command", "status"), [("true", 0), ("exit 3", 3), ("false", 1), ("kill -9 $$", 137)])
    async def test_exit_status(self, sandbox: Sandbox, command: str, status: int) -> None:
        result = await sandbox.run(command)
        assert result.exit_code == status
        assert not result.timed_out and not result.cancelled
        assert result.succeeded is (status == 0)
        assert result.duration_s >= 0

    # -- timeout, cancellation, kill --------------------------------------------------------------------------------

    async def test_timeout_kills_the_whole_tree(self, sandbox: Sandbox, process_probe: ProcessProbe) -> None:
        transcript = Transcript()
        async with watching(sandbox, process_probe) as seen:
            result = await asyncio.wait_for(sandbox.run(TREE, on_output=transcript, timeout=3), PATIENCE_S)
        assert result.timed_out
        assert result.exit_code is None
        assert not result.cancelled
        assert transcript.text() == ["started"]
        assert not sandbox.running
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")

    async def test_cancelling_the_run_kills_the_whole_tree(self, sandbox: Sandbox, process_probe: ProcessProbe) -> None:
        transcript = Transcript()
        async with watching(sandbox, process_probe) as seen:
            task = self.start(sandbox, TREE, transcript)
            await transcript.wait_for_line("started")
            await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, PATIENCE_S)
        assert not sandbox.running
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")

    async def test_kill_stops_the_whole_tree(self, sandbox: Sandbox, process_probe: ProcessProbe) -> None:
        transcript = Transcript()
        async with watching(sandbox, process_probe) as seen:
            task = self.start(sandbox, TREE, transcript)
            await transcript.wait_for_line("started")
            await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
            await sandbox.kill()
            result = await asyncio.wait_for(task, PATIENCE_S)
        assert result.cancelled and not result.timed_out
        assert result.exit_code is None
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")
        await sandbox.kill()  # idempotent

    async def test_background_processes_do_not_outlive_the_run(
        self, sandbox: Sandbox, process_probe: ProcessProbe
    ) -> None:
        transcript = Transcript()
        async with watching(sandbox, process_probe) as seen:
            # The shell exits at once, leaving a background job that holds stdout open; it gets the gate first,
            # so the watcher sees it before the shell ends.
            task = self.start(sandbox, f"sleep 1000 & echo started; {WAIT_FOR_GO}", transcript)
            await transcript.wait_for_line("started")
            await until(saw(seen, "sleep 1000"), "the background job to show up", limit_s=PATIENCE_S)
            await sandbox.write_file("go", "")
            result = await asyncio.wait_for(task, PATIENCE_S)
        assert result.exit_code == 0
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")

    async def test_kill_and_pause_are_safe_when_nothing_runs(self, sandbox: Sandbox) -> None:
        await sandbox.kill()
        await sandbox.kill()
        await sandbox.pause()
        assert not sandbox.paused and not sandbox.running
        await sandbox.resume()
        assert sandbox.pids() == []
        assert (await sandbox.run("true")).exit_code == 0

    # -- pause and resume -------------------------------------------------------------------------------------------

    async def test_pause_freezes_output_and_resume_continues_where_it_stopped(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        task = self.start(sandbox, COUNTER, transcript)
        await transcript.wait_for(lambda lines: len(lines) >= 3, "three counter lines")
        await sandbox.pause()
        await sandbox.pause()  # idempotent
        assert sandbox.paused and sandbox.running
        await asyncio.sleep(0.3)  # lines written just before the freeze may still be in the pipe
        frozen_at = len(transcript.text())
        await asyncio.sleep(1.0)
        assert len(transcript.text()) == frozen_at, "output continued while paused"
        await sandbox.resume()
        await sandbox.resume()  # idempotent
        assert not sandbox.paused
        await transcript.wait_for(lambda lines: len(lines) >= frozen_at + 3, "counter lines after resume")
        await sandbox.kill()
        await asyncio.wait_for(task, PATIENCE_S)
        # The same process went on counting: no restart, nothing skipped or repeated.
        numbers = counts(transcript.text())
        assert numbers == list(range(1, len(numbers) + 1))

    async def test_kill_while_paused_leaves_nothing(self, sandbox: Sandbox, process_probe: ProcessProbe) -> None:
        transcript = Transcript()
        async with watching(sandbox, process_probe) as seen:
            task = self.start(sandbox, f"sleep 1000 & {COUNTER}", transcript)
            await transcript.wait_for(lambda lines: len(lines) >= 2, "two counter lines")
            await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
            await sandbox.pause()
            assert sandbox.paused
            await sandbox.kill()
            result = await asyncio.wait_for(task, PATIENCE_S)
        assert result.cancelled
        assert not sandbox.paused and not sandbox.running
        await self.assert_tree_gone(process_probe, seen, "sleep 1000")

    async def test_paused_time_does_not_count_against_the_timeout(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        task = self.start(sandbox, GATED, transcript, timeout=2.0)
        await transcript.wait_for_line("ready")
        await sandbox.pause()
        await asyncio.sleep(3.0)  # longer than the whole timeout
        assert not task.done()
        await sandbox.write_file("go", "")
        await sandbox.resume()
        result = await asyncio.wait_for(task, PATIENCE_S)
        assert not result.timed_out
        assert result.exit_code == 0
        assert transcript.text() == ["ready", "done"]

    # -- one command at a time --------------------------------------------------------------------------------------

    async def test_a_second_concurrent_run_is_refused(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        task = self.start(sandbox, GATED, transcript)
        await transcript.wait_for_line("ready")
        assert sandbox.running
        assert sandbox.pids() != []
        with pytest.raises(SandboxBusy):
            await sandbox.run("true")
        await sandbox.write_file("go", "")
        assert (await asyncio.wait_for(task, PATIENCE_S)).exit_code == 0
        assert not sandbox.running
        assert sandbox.pids() == []

    # -- working directory and files --------------------------------------------------------------------------------

    async def test_the_working_directory_persists_across_runs_and_retries(
        self, sandbox: Sandbox, sandbox_factory: SandboxFactory
    ) -> None:
        assert (await sandbox.run("echo from-run-1 > note.txt")).exit_code == 0
        transcript = Transcript()
        await sandbox.run("cat note.txt; pwd", on_output=transcript)
        assert transcript.text() == ["from-run-1", str(sandbox.workdir)]
        # A retry may get a new sandbox object on the same directory.
        retry = sandbox_factory(sandbox.workdir)
        try:
            again = Transcript()
            await retry.run("cat note.txt", on_output=again)
            assert again.text() == ["from-run-1"]
        finally:
            await retry.close()

    async def test_write_file_and_read_file(self, sandbox: Sandbox) -> None:
        await sandbox.write_file("in/data.txt", "héllo\n")
        await sandbox.write_file("in/raw.bin", b"\x00\xff")
        transcript = Transcript()
        result = await sandbox.run("cat in/data.txt; wc -c < in/raw.bin; echo made > out.txt", on_output=transcript)
        assert result.exit_code == 0
        assert [line.strip() for line in transcript.text()] == ["héllo", "2"]
        assert await sandbox.read_file("out.txt") == b"made\n"
        assert await sandbox.read_file("in/raw.bin") == b"\x00\xff"

    @pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../outside.txt", "."])
    async def test_file_paths_cannot_leave_the_working_directory(self, sandbox: Sandbox, path: str) -> None:
        with pytest.raises(ValueError):
            await sandbox.write_file(path, "x")
        with pytest.raises(ValueError):
            await sandbox.read_file(path)

    async def test_reading_a_missing_file_raises(self, sandbox: Sandbox) -> None:
        with pytest.raises(FileNotFoundError):
            await sandbox.read_file("nothing-here.txt")

    # -- environment and secrets ------------------------------------------------------------------------------------

    async def test_the_engine_environment_is_not_inherited(
        self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AGENTDECK_TEST_SECRET", "leaked-from-the-engine")
        transcript = Transcript()
        await sandbox.run('echo "[${AGENTDECK_TEST_SECRET:-unset}]"; env', on_output=transcript)
        lines = transcript.text()
        assert lines[0] == "[unset]"
        assert not any("leaked-from-the-engine" in line for line in lines)
        given = Transcript()
        await sandbox.run('echo "[$AGENTDECK_TEST_SECRET]"', on_output=given, env={"AGENTDECK_TEST_SECRET": "given"})
        assert given.text() == ["[given]"]

    async def test_the_base_environment(self, sandbox: Sandbox) -> None:
        transcript = Transcript()
        await sandbox.run('echo "$HOME|$TERM|$PYTHONUNBUFFERED"; command -v sh', on_output=transcript)
        assert transcript.text()[0] == f"{sandbox.workdir}|dumb|1"
        assert transcript.text()[1].endswith("/sh"), "PATH must find the usual tools"

    async def test_secrets_are_redacted_from_output(self, sandbox: Sandbox) -> None:
        secret = "sk-test-0123456789abcdef"
        transcript = Transcript()
        result = await sandbox.run(
            'echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2; printf "%s" "tail-$API_TOKEN"',
            on_output=transcript,
            env={"API_TOKEN": secret},
            redact=[secret],
        )
        assert result.exit_code == 0
        assert transcript.text("stdout") == [f"token={REDACTED}", f"tail-{REDACTED}"]
        assert transcript.text("stderr") == [REDACTED]
        assert not any(secret in line for _, line in transcript.lines)
