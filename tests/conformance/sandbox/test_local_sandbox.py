"""The local sandbox against the conformance suite, in both modes, plus what only the local backend promises.

Every conformance check runs twice: ``bwrap`` (bubblewrap isolation) and ``plain`` (process group + rlimits, the
fallback when bubblewrap is missing). Without ``bwrap`` on PATH the bwrap variants are skipped, with a warning
in the summary, so a machine that silently tests only the fallback is visible.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from engine.sandbox import (
    Limits,
    LocalSandbox,
    Sandbox,
    SandboxClosed,
    SandboxUnavailable,
    bwrap_unavailable_reason,
    make_sandbox,
)
from tests.conformance.sandbox.suite import (
    COUNTER,
    PATIENCE_S,
    TREE,
    SandboxConformance,
    SandboxFactory,
    Transcript,
    saw,
    watching,
)
from tests.support.polling import until

LOCAL_MODES = ["bwrap", "plain"]

#: Where the integration Redis listens on the host; a sandbox without network must not reach it.
REDIS_ADDRESS = ("127.0.0.1", 6379)

CONNECT_TO_REDIS = (
    f"python3 -c \"import socket; socket.create_connection({REDIS_ADDRESS!r}, timeout=1); print('connected')\""
)


def host_has(path: Path) -> bool:
    """Whether ``path`` exists as the host (not the sandbox) sees it."""
    return path.exists()


def require_bwrap() -> None:
    """Skip, loudly, when bubblewrap cannot run here: a warning in the summary as well as the skip."""
    reason = bwrap_unavailable_reason()
    if reason is not None:
        warnings.warn(f"bubblewrap sandbox NOT tested: {reason}", UserWarning, stacklevel=2)
        pytest.skip(f"bubblewrap sandbox not testable here: {reason}")


def local_factory(mode: str, **opts: object) -> SandboxFactory:
    """A factory for local sandboxes in ``mode`` (``bwrap`` or ``plain``)."""
    if mode == "bwrap":
        require_bwrap()

    def build(workdir: Path) -> Sandbox:
        return LocalSandbox(workdir, use_bwrap=mode == "bwrap", **opts)  # type: ignore[arg-type]

    return build


@pytest.fixture(params=LOCAL_MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox_factory(mode: str) -> SandboxFactory:
    return local_factory(mode)


class PsutilProbe:
    """Tells whether local processes still run; remembers each as a ``psutil.Process`` so pid reuse cannot fool it."""

    def __init__(self) -> None:
        self.observed: dict[int, psutil.Process] = {}

    async def observe(self, sandbox: Sandbox) -> dict[int, str]:
        found: dict[int, str] = {}
        for pid in sandbox.pids():
            try:
                proc = self.observed.setdefault(pid, psutil.Process(pid))
                found[pid] = " ".join(proc.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    async def survivors(self) -> list[str]:
        left: list[str] = []
        for proc in self.observed.values():
            try:
                if not proc.is_running():
                    continue
                status = proc.status()
                # A zombie is dead. One whose parent is init (or bwrap's orphaned helper waiting for init) is for
                # init to reap, not a leak; one whose parent is this test process would be our leak.
                if status == psutil.STATUS_ZOMBIE and proc.ppid() != os.getpid():
                    continue
                left.append(f"pid {proc.pid} ({status}): {' '.join(proc.cmdline()) or proc.name()}")
            except psutil.NoSuchProcess:
                continue
        return left


@pytest.fixture
def process_probe() -> PsutilProbe:
    return PsutilProbe()


class TestLocalSandbox(SandboxConformance):
    """The conformance suite, once per local mode."""

    def test_runs_in_the_requested_mode(self, sandbox: Sandbox, mode: str) -> None:
        assert isinstance(sandbox, LocalSandbox)
        assert sandbox.uses_bwrap is (mode == "bwrap")


# -- local only: resource limits, grace period, escapes ---------------------------------------------------------------


@pytest.fixture
async def local_sandbox(mode: str, tmp_path: Path) -> AsyncIterator[LocalSandbox]:
    sandbox = local_factory(mode)(tmp_path / "work")
    assert isinstance(sandbox, LocalSandbox)
    yield sandbox
    await sandbox.close()


async def test_rlimits_are_applied(mode: str, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=600, address_space_mb=2048, file_size_mb=8, open_files=256)
    sandbox = local_factory(mode, limits=limits)(tmp_path / "work")
    transcript = Transcript()
    script = (
        "import resource as r; "
        "print(*(r.getrlimit(x)[0] for x in (r.RLIMIT_CPU, r.RLIMIT_AS, r.RLIMIT_FSIZE, r.RLIMIT_NOFILE)))"
    )
    result = await sandbox.run(f'ulimit -n; python3 -c "{script}"', on_output=transcript)
    await sandbox.close()
    assert result.exit_code == 0, transcript.lines
    assert transcript.text() == ["256", f"600 {2048 * 1024 * 1024} {8 * 1024 * 1024} 256"]


async def test_default_limits(local_sandbox: LocalSandbox) -> None:
    transcript = Transcript()
    await local_sandbox.run("ulimit -n; ulimit -v", on_output=transcript)
    assert transcript.text() == ["1024", str(4096 * 1024)]


async def test_the_file_size_limit_is_enforced(mode: str, tmp_path: Path) -> None:
    sandbox = local_factory(mode, limits=Limits(file_size_mb=1))(tmp_path / "work")
    result = await sandbox.run("head -c 3000000 /dev/zero > big.bin")
    await sandbox.close()
    assert result.exit_code != 0
    assert (sandbox.workdir / "big.bin").stat().st_size <= 1024 * 1024


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(
    mode: str, tmp_path: Path, process_probe: PsutilProbe
) -> None:
    sandbox = local_factory(mode, kill_grace_s=0.5)(tmp_path / "work")
    transcript = Transcript()
    async with watching(sandbox, process_probe) as seen:
        result = await sandbox.run(f"trap '' TERM; {TREE}", on_output=transcript, timeout=2)
    await sandbox.close()
    assert result.timed_out
    assert transcript.text() == ["started"]
    assert saw(seen, "sleep 1000")()
    assert await process_probe.survivors() == []


async def test_a_child_that_leaves_the_process_group_is_still_stopped(
    local_sandbox: LocalSandbox, process_probe: PsutilProbe
) -> None:
    """``setsid`` takes a child out of the process group; killpg alone would miss it, the tree walk does not."""
    transcript = Transcript()
    async with watching(local_sandbox, process_probe) as seen:
        task = asyncio.create_task(local_sandbox.run(f"setsid {TREE}", on_output=transcript))
        await transcript.wait_for_line("started")
        await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
        await local_sandbox.pause()
        await local_sandbox.kill()
        result = await asyncio.wait_for(task, PATIENCE_S)
    assert result.cancelled
    assert await process_probe.survivors() == []


# -- bwrap only: isolation --------------------------------------------------------------------------------------------


@pytest.fixture
async def bwrap_sandbox(tmp_path: Path) -> AsyncIterator[LocalSandbox]:
    require_bwrap()
    sandbox = LocalSandbox(tmp_path / "work", use_bwrap=True)
    yield sandbox
    await sandbox.close()


async def test_bwrap_system_is_read_only_and_workdir_writable(bwrap_sandbox: LocalSandbox) -> None:
    name = f"agentdeck-sandbox-{uuid.uuid4().hex}"
    transcript = Transcript()
    result = await bwrap_sandbox.run(
        f"touch /usr/{name} && echo usr-writable || echo usr-read-only; "
        f"touch {Path.home()}/{name} && echo home-writable || echo home-read-only; "
        "touch here.txt && echo workdir-writable",
        on_output=transcript,
    )
    assert result.exit_code == 0
    assert transcript.text() == ["usr-read-only", "home-read-only", "workdir-writable"]
    assert not host_has(Path("/usr", name))
    assert host_has(bwrap_sandbox.workdir / "here.txt")


async def test_bwrap_tmp_is_private(bwrap_sandbox: LocalSandbox) -> None:
    name = f"agentdeck-sandbox-{uuid.uuid4().hex}"
    host_file = Path("/tmp") / f"{name}-host"
    host_file.write_text("host")
    try:
        transcript = Transcript()
        await bwrap_sandbox.run(
            f"test -e {host_file} && echo sees-host-tmp || echo private-tmp; touch /tmp/{name}-inside && echo wrote",
            on_output=transcript,
        )
        assert transcript.text() == ["private-tmp", "wrote"]
        assert not host_has(Path("/tmp") / f"{name}-inside")
    finally:
        host_file.unlink()


def redis_listening() -> bool:
    try:
        socket.create_connection(REDIS_ADDRESS, timeout=1).close()
    except OSError:
        return False
    return True


async def test_bwrap_has_no_network_unless_asked(bwrap_sandbox: LocalSandbox) -> None:
    if not redis_listening():
        pytest.skip(f"nothing listens on {REDIS_ADDRESS} on the host, so reaching it proves nothing")
    closed = Transcript()
    result = await bwrap_sandbox.run(CONNECT_TO_REDIS, on_output=closed)
    assert result.exit_code != 0
    assert "connected" not in closed.text()
    opened = Transcript()
    result = await bwrap_sandbox.run(CONNECT_TO_REDIS, on_output=opened, network=True)
    assert result.exit_code == 0, opened.lines
    assert opened.text() == ["connected"]


async def test_bwrap_contains_a_daemon_that_escaped_group_and_parent(
    bwrap_sandbox: LocalSandbox, process_probe: PsutilProbe
) -> None:
    """A double-forked ``setsid`` daemon is orphaned out of the tree; the pid namespace still takes it down."""
    transcript = Transcript()
    async with watching(bwrap_sandbox, process_probe) as seen:
        result = await bwrap_sandbox.run(
            "(setsid sleep 1001 > /dev/null 2>&1 &); echo started; sleep 1000", on_output=transcript, timeout=3
        )
    assert result.timed_out
    assert saw(seen, "sleep 1001")(), f"never saw the daemon among {seen}"
    assert await process_probe.survivors() == []


# -- construction and the factory -------------------------------------------------------------------------------------


def test_auto_mode_uses_bwrap_exactly_when_it_works(tmp_path: Path) -> None:
    assert LocalSandbox(tmp_path).uses_bwrap is (bwrap_unavailable_reason() is None)


def test_requiring_bwrap_where_it_is_missing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_bwrap_probe: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bwrap_unavailable_reason.cache_clear()
    with pytest.raises(SandboxUnavailable, match="bwrap is not on PATH"):
        LocalSandbox(tmp_path, use_bwrap=True)
    assert not LocalSandbox(tmp_path).uses_bwrap
    assert not LocalSandbox(tmp_path, use_bwrap=False).uses_bwrap


@pytest.fixture
def restore_bwrap_probe() -> Iterator[None]:
    """Forget a probe result a test produced under a fake PATH."""
    yield
    bwrap_unavailable_reason.cache_clear()


def test_the_working_directory_is_created(tmp_path: Path) -> None:
    sandbox = LocalSandbox(tmp_path / "a" / "b", use_bwrap=False)
    assert sandbox.workdir.is_dir()


def test_make_sandbox_builds_local_sandboxes(tmp_path: Path) -> None:
    sandbox = make_sandbox("local", tmp_path, use_bwrap=False, kill_grace_s=1.0)
    assert isinstance(sandbox, LocalSandbox)
    assert not sandbox.uses_bwrap
    assert sandbox.kill_grace_s == 1.0


def test_make_sandbox_builds_e2b_sandboxes_when_a_key_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2B_API_KEY", "e2b_not_used_here")
    sandbox = make_sandbox("e2b", tmp_path / "wf" / "task")
    # Nothing is created before first use; the working directory is the one inside the sandbox.
    assert type(sandbox).__name__ == "E2BSandbox" and sandbox.remote
    assert str(sandbox.workdir) == "/home/user/agentdeck/wf/task"


def test_make_sandbox_rejects_unknown_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sandbox kind 'docker'"):
        make_sandbox("docker", tmp_path)


async def test_closing_stops_the_running_command(local_sandbox: LocalSandbox, process_probe: PsutilProbe) -> None:
    transcript = Transcript()
    async with watching(local_sandbox, process_probe) as seen:
        task = asyncio.create_task(local_sandbox.run(TREE, on_output=transcript))
        await transcript.wait_for_line("started")
        await until(saw(seen, "sleep 1000"), "the grandchild to show up", limit_s=PATIENCE_S)
        await local_sandbox.close()
        result = await asyncio.wait_for(task, PATIENCE_S)
    assert result.cancelled
    assert await process_probe.survivors() == []


async def test_a_closed_sandbox_runs_nothing(local_sandbox: LocalSandbox) -> None:
    await local_sandbox.close()
    await local_sandbox.close()
    with pytest.raises(SandboxClosed):
        await local_sandbox.run("true")


async def starting(sandbox: LocalSandbox) -> None:
    """Yield to the loop until ``run`` is inside the process start (the window between call and ``running``)."""
    for _ in range(1000):
        if sandbox._starting:
            return
        await asyncio.sleep(0)
    pytest.fail("run() never reached the process start")


async def test_kill_during_start_stops_the_command_once_it_exists(local_sandbox: LocalSandbox) -> None:
    task = asyncio.create_task(local_sandbox.run(TREE))
    await starting(local_sandbox)
    assert not local_sandbox.running
    await local_sandbox.kill()
    result = await asyncio.wait_for(task, PATIENCE_S)
    assert result.cancelled
    assert result.exit_code is None


async def test_pause_during_start_freezes_the_command_once_it_exists(local_sandbox: LocalSandbox) -> None:
    transcript = Transcript()
    task = asyncio.create_task(local_sandbox.run(COUNTER, on_output=transcript))
    await starting(local_sandbox)
    await local_sandbox.pause()
    await until(lambda: local_sandbox.paused, "the command to be paused after it started", limit_s=PATIENCE_S)
    await asyncio.sleep(0.3)  # lines written just before the freeze may still be in the pipe
    frozen_at = len(transcript.text())
    await asyncio.sleep(1.0)
    assert len(transcript.text()) == frozen_at, "output continued while paused"
    await local_sandbox.resume()
    await transcript.wait_for(lambda lines: len(lines) >= frozen_at + 3, "counter lines after resume")
    await local_sandbox.kill()
    assert (await asyncio.wait_for(task, PATIENCE_S)).cancelled


async def test_cancelling_during_start_ends_the_run_and_leaves_nothing(local_sandbox: LocalSandbox) -> None:
    """Python 3.11's subprocess_exec, cancelled before it connects the pipes, waits forever; a cancel (a fail_fast
    sibling, a workflow cancel) that lands there must still end the run, with nothing of the command left."""
    task = asyncio.create_task(local_sandbox.run(TREE))
    await starting(local_sandbox)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, PATIENCE_S)
    assert not local_sandbox.running
    left = [p for p in psutil.process_iter(["cwd", "cmdline"]) if p.info["cwd"] == str(local_sandbox.workdir)]
    assert left == [], left
    assert (await local_sandbox.run("true")).exit_code == 0
