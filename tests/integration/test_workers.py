"""Commands run on ``agentdeck worker`` processes through Redis Streams: a real ``redis-server`` of the test's own
(with a password), real worker processes started with the command line, and the test's engine as coordinator.

The lease is 3 s here (``AGENTDECK_WORKER_LEASE``), so a killed worker's commands are taken over quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from db import connect
from db.models import EventType, TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from engine.workers.dispatcher import Dispatcher
from engine.workers.protocol import Keys, Reply, RunRequest, WorkerSettings
from engine.workers.sandbox import WorkerSandbox
from engine.workers.worker import MAX_DELIVERIES, Worker
from tests.support.polling import until
from tests.support.procstate import frozen
from tests.support.redis_server import PASSWORD, RedisServer, own_redis, unused_port

AGENTDECK = str(Path(sys.executable).parent / "agentdeck")
LEASE_S = "3"
LIMIT_S = 240.0  # the whole 300-task run on a busy machine; only reached when something is broken
KEYS = Keys()


class WorkerProcess:
    """``agentdeck worker`` in a process of its own; its consumer name is ``host:pid``."""

    def __init__(self, url: str, directory: Path, concurrency: int, env: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "worker.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
        full_env |= {"AGENTDECK_WORKER_LEASE": LEASE_S, "AGENTDECK_WORKER_DIR": str(directory / "tasks")}
        full_env |= {"XDG_DATA_HOME": str(directory / "xdg"), **(env or {})}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [AGENTDECK, "worker", "--redis", url, "--concurrency", str(concurrency)],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.name = f"{socket.gethostname()}:{self.process.pid}"
        self.root = directory / "tasks"

    def ready(self) -> bool:
        assert self.process.poll() is None, f"worker exited: {self.log.read_text()}"
        return "taking commands" in self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


@contextlib.contextmanager
def workers(server: RedisServer, tmp_path: Path, count: int, concurrency: int, **env: str) -> Iterator[list[Any]]:
    started = [WorkerProcess(server.url, tmp_path / f"w{n}", concurrency, env) for n in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


@contextlib.asynccontextmanager
async def coordinator(server: RedisServer, tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, redis_url=server.url, workdir_root=tmp_path / "engine") as engine:
        yield engine


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisServer]:
    monkeypatch.setenv("AGENTDECK_WORKER_LEASE", LEASE_S)  # the coordinator's side of the lease
    async with own_redis(tmp_path / "redis") as started:
        yield started


def spec(tasks: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {"name": "spread", "defaults": {"sandbox": "worker"}, "agents": {"sh": {"kind": "shell"}}, "tasks": tasks}
        | extra
    )


def pending(server: RedisServer) -> dict[str, int]:
    """Entries each worker holds now (XPENDING's summary)."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        summary = client.xpending(KEYS.tasks, KEYS.group)
        return {c["name"]: int(c["pending"]) for c in summary.get("consumers") or []}
    finally:
        client.close()


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in p for p in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def all_frozen(marker: str) -> bool:
    """Every shell and sleep running ``marker`` is frozen (``T``, or a shell waiting on its stopped vfork child)."""
    found = []
    for proc in processes_with(marker):
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.name() in ("sh", "sleep"):
                found.append(frozen(proc))
    return bool(found) and all(found)


def states(marker: str) -> set[str]:
    """/proc states of the shells and sleeps running ``marker`` (T: stopped); not bwrap's own processes."""
    out = set()
    for proc in processes_with(marker):
        with contextlib.suppress(OSError, psutil.NoSuchProcess):
            if proc.name() not in ("sh", "sleep"):
                continue
            out.add(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
    return out


async def test_three_workers_run_300_tasks_and_one_killed_mid_run_loses_none(
    server: RedisServer, tmp_path: Path
) -> None:
    tasks = [{"id": f"t{n:03}", "agent": "sh", "run": f"echo start {n}; sleep 0.4; echo end {n}"} for n in range(300)]
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=3, concurrency=8) as started:
            await until(lambda: all(w.ready() for w in started), limit_s=60)
            wf = await engine.submit(spec(tasks, concurrency=24))
            victim = started[0]

            def done() -> int:
                return sum(1 for t in engine.runs[wf].tasks.values() if t.status is TaskStatus.COMPLETED)

            # Mid-run: a fifth of the tasks done, and the victim holding commands it has not finished.
            await until(lambda: done() >= 60 and pending(server).get(victim.name, 0) > 0, limit_s=LIMIT_S)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(30)
            async with asyncio.timeout(LIMIT_S):
                assert await engine.wait(wf) is WorkflowStatus.COMPLETED
            survivors = {w.name for w in started[1:]}
            events = await engine.stores.events.list(wf)
            rows = await engine.stores.tasks.list(wf)

    assert all(row.status is TaskStatus.COMPLETED for row in rows) and len(rows) == 300
    completions = Counter(e.task for e in events if e.type == EventType.TASK_COMPLETED)
    assert set(completions) == {t["id"] for t in tasks} and set(completions.values()) == {1}, "each completed once"
    for row in rows:
        assert row.output is not None and row.output["tail"][-1] == f"end {int(row.key[1:])}"
    retried = [e for e in events if e.type == EventType.TASK_RETRYING and e.data.get("redelivered")]
    # Taken over: what the killed worker held when it died (at most its concurrency, 8). A survivor slowed down
    # past its lease by this busy machine can lose a command to the other survivor too: that is a redelivery as well.
    from_victim = {e.task for e in retried if e.data["error"].startswith(f"worker {victim.name} stopped answering")}
    assert 1 <= len(from_victim) <= 8, retried
    for event in retried:
        assert any(name in event.data["error"].split("; ")[1] for name in survivors), event
    assert pending(server) == {victim.name: 0} or not any(pending(server).values()), "every entry acknowledged"
    # Each task names the worker that took its command; a taken-over one names the victim, then who ran it again.
    assigned: dict[str, list[str]] = {}
    for event in events:
        if event.type == EventType.TASK_ASSIGNED:
            assigned.setdefault(str(event.task), []).append(event.data["worker"])
    assert set(assigned) == {t["id"] for t in tasks}
    assert {name for names in assigned.values() for name in names} <= {w.name for w in started}
    for task in from_victim:
        assert assigned[str(task)][0] == victim.name and assigned[str(task)][-1] in survivors, assigned[str(task)]


async def test_pause_freezes_the_command_on_its_worker_resume_thaws_it_and_cancel_kills_it(
    server: RedisServer, tmp_path: Path
) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    count = f"i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done & sleep {marker}"
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=1, concurrency=2) as started:
            await until(lambda: started[0].ready(), limit_s=60)
            wf = await engine.submit(spec([{"id": "hold", "agent": "sh", "run": count}]))
            await until(lambda: states(marker) == {"S"}, "the command sleeping on the worker", limit_s=60)
            await engine.pause(wf)
            await until(lambda: all_frozen(marker), lambda: f"the command stopped (T) on the worker: {states(marker)}",
                        limit_s=60)  # fmt: skip
            await engine.resume(wf)
            await until(lambda: states(marker) == {"S"}, "the command running again", limit_s=60)
            await engine.cancel(wf)
            await until(lambda: not processes_with(marker), "the command gone from the worker", limit_s=60)
            assert await engine.wait(wf) is WorkflowStatus.CANCELLED
            assert started[0].process.poll() is None, "the worker goes on"
            events = await engine.stores.events.list(wf)
    ticks = [line for e in events if e.type == EventType.TASK_OUTPUT for line in e.data["lines"]]
    assert ticks and all(line.startswith("tick ") for line in ticks), "its output came back"
    kinds = [e.type for e in events if e.task == "hold"]
    assert EventType.TASK_PAUSED in kinds and EventType.TASK_CANCELLED in kinds


async def test_secrets_are_read_on_the_worker_and_never_cross_redis(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = f"coordinator-{uuid.uuid4().hex}", f"worker-{uuid.uuid4().hex}"
    monkeypatch.setenv("DEPLOY_TOKEN", mine)
    seen: list[str] = []
    client = redis.Redis.from_url(server.url, decode_responses=True)
    stop = threading.Event()

    def monitor() -> None:  # every command Redis receives, as text
        with client.monitor() as feed:  # type: ignore[no-untyped-call]
            for command in feed.listen():
                seen.append(str(command.get("command", "")))
                if stop.is_set():
                    return

    watching = threading.Thread(target=monitor, daemon=True)
    watching.start()

    def monitoring() -> bool:  # MONITOR is on once it shows our own ping (on a busy machine that takes a while)
        client.ping()
        return any(c.upper().startswith("PING") for c in seen)

    await until(monitoring, "MONITOR watching the traffic", limit_s=60)
    task = {"id": "deploy", "agent": "sh", "run": 'echo "token=$DEPLOY_TOKEN"', "secrets": ["DEPLOY_TOKEN"]}
    try:
        async with coordinator(server, tmp_path) as engine:
            secrets = {"DEPLOY_TOKEN": theirs, "AGENTDECK_WORKER_SECRETS": "DEPLOY_TOKEN"}
            with workers(server, tmp_path, count=1, concurrency=1, **secrets) as started:
                await until(lambda: started[0].ready(), limit_s=60)
                wf = await engine.submit(spec([task]))
                assert await engine.wait(wf) is WorkflowStatus.COMPLETED
                events = await engine.stores.events.list(wf)
    finally:
        stop.set()
        client.ping()  # one more command, so the monitor loop sees stop
        watching.join(30)
        client.close()
    lines = [line for e in events if e.type == EventType.TASK_OUTPUT for line in e.data["lines"]]
    assert lines == ["token=***"], "the worker's own value, redacted there"
    assert any("XADD" in c.upper() for c in seen), "the monitor saw the traffic"
    assert not [c for c in seen if mine in c or theirs in c], "a secret crossed Redis"


async def test_a_worker_stops_the_commands_of_a_coordinator_killed_mid_run(server: RedisServer, tmp_path: Path) -> None:
    """No command outlives its engine: a coordinator SIGKILLed (``agentdeck run --headless`` in a process of its
    own) leaves its alive key to lapse, and the worker kills what it ran for it."""
    marker = f"{uuid.uuid4().int % 10**6 + 2 * 10**6}"
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: orphan\ndefaults: {sandbox: worker}\nagents: {sh: {kind: shell}}\n"
        f"tasks:\n  - {{id: long, agent: sh, run: 'sleep {marker}'}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    env |= {"AGENTDECK_WORKER_LEASE": LEASE_S, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    args = [AGENTDECK, "run", str(flow), "--headless", "--db", f"surrealkv://{tmp_path / 'state.db'}"]
    with workers(server, tmp_path, count=1, concurrency=1) as started:
        await until(lambda: started[0].ready(), limit_s=60)
        run = subprocess.Popen(  # noqa: ASYNC220 - started, then awaited by polling below
            [*args, "--redis", server.url], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await until(lambda: bool(processes_with(marker)), "the command running on the worker", limit_s=60)
            run.send_signal(signal.SIGKILL)
            run.wait(30)
            await until(lambda: not processes_with(marker), "the orphaned command killed by its worker", limit_s=60)
            await until(lambda: not any(pending(server).values()), "its entry acknowledged", limit_s=60)
            assert started[0].process.poll() is None, "the worker goes on"
        finally:
            if run.poll() is None:
                run.kill()


async def test_a_killed_worker_takes_its_commands_with_it(server: RedisServer, tmp_path: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 3 * 10**6}"
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=1, concurrency=1) as started:
            await until(lambda: started[0].ready(), limit_s=60)
            wf = await engine.submit(spec([{"id": "long", "agent": "sh", "run": f"sleep {marker}"}]))
            await until(lambda: bool(processes_with(marker)), "the command running on the worker", limit_s=60)
            started[0].process.send_signal(signal.SIGKILL)
            await until(lambda: not processes_with(marker), "the command gone with its worker", limit_s=60)
            await engine.cancel(wf)


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")} | {"XDG_DATA_HOME": str(home)}
    return subprocess.run([AGENTDECK, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_worker_with_no_redis_to_reach_exits_3_with_a_hint(tmp_path: Path) -> None:
    down = cli("worker", "--redis", f"redis://127.0.0.1:{unused_port()}/0", home=tmp_path)
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr and "hint:" in down.stderr, down.stderr
    assert "Traceback" not in down.stderr


async def test_a_worker_given_the_wrong_password_exits_3_and_never_shows_it(
    server: RedisServer, tmp_path: Path
) -> None:
    wrong = server.url.replace(PASSWORD, "not-the-password")
    refused = await asyncio.to_thread(cli, "worker", "--redis", wrong, home=tmp_path)
    assert refused.returncode == 3 and "credentials were refused" in refused.stderr, refused.stderr
    assert "not-the-password" not in refused.stderr and "Traceback" not in refused.stderr


def test_a_workflow_that_runs_on_workers_without_redis_is_refused_with_exit_2(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: w\ndefaults: {sandbox: worker}\nagents: {sh: {kind: shell}}\ntasks: [{id: a, agent: sh, run: 'true'}]\n"
    )
    result = cli("run", str(flow), "--headless", "--db", "mem://", home=tmp_path)
    assert result.returncode == 2 and "--redis" in result.stderr and "Traceback" not in result.stderr, result.stderr


async def test_a_worker_hands_out_only_the_secrets_it_is_told_to(server: RedisServer, tmp_path: Path) -> None:
    task = {"id": "deploy", "agent": "sh", "run": 'echo "$HOME_TOKEN"', "secrets": ["HOME_TOKEN"], "retries": 0}
    async with coordinator(server, tmp_path) as engine:
        with workers(server, tmp_path, count=1, concurrency=1, HOME_TOKEN="worker-own-value") as started:
            await until(lambda: started[0].ready(), limit_s=60)
            wf = await engine.submit(spec([task]))
            assert await engine.wait(wf) is WorkflowStatus.FAILED
            row = (await engine.stores.tasks.list(wf))[0]
    assert row.error is not None and "HOME_TOKEN" in row.error and "AGENTDECK_WORKER_SECRETS" in row.error


async def test_a_worker_that_lost_its_entry_can_neither_answer_for_it_nor_acknowledge_it(
    server: RedisServer, tmp_path: Path
) -> None:
    """A worker slowed past its lease: another took its entry over. Its late end must not count, and must not
    acknowledge the entry (that would drop the other worker's run of it)."""
    slow = Worker(server.url, name="slow", root=tmp_path / "slow")
    fast = Worker(server.url, name="fast", root=tmp_path / "fast")
    try:
        await slow.connect()
        entry = str(await slow.client.xadd(KEYS.tasks, {"m": "{}"}))
        await slow.client.xreadgroup(KEYS.group, "slow", {KEYS.tasks: ">"}, count=1)
        await fast.client.xclaim(KEYS.tasks, KEYS.group, "fast", 0, [entry])  # taken over
        assert await slow.finish(entry, "replies", "late end") is False
        assert await slow.client.exists("replies") == 0, "the lost worker's end was not added"
        assert pending(server) == {"fast": 1}, "the entry is still the other worker's"
        assert await fast.finish(entry, "replies", "its end") is True
        assert await slow.client.xlen("replies") == 1 and not any(pending(server).values())
    finally:
        await slow.client.aclose()
        await fast.client.aclose()


async def test_a_command_every_worker_dies_on_is_failed_after_five_deliveries_not_run_again(
    server: RedisServer, tmp_path: Path
) -> None:
    """A command that brings its worker down would be taken over forever: after MAX_DELIVERIES it fails instead."""
    worker = Worker(server.url, name="survivor", root=tmp_path / "survivor", settings=WorkerSettings(lease=0.5))
    request = RunRequest(run="wf-x/poison/1/abc", reply="replies", coordinator="c", workflow="wf-x", task="poison",
                         command="touch ran")  # fmt: skip
    await worker.connect()
    await worker.client.set(KEYS.alive("c"), "1")
    entry = str(await worker.client.xadd(KEYS.tasks, request.encode()))  # type: ignore[arg-type]
    await worker.client.xreadgroup(KEYS.group, "dead-0", {KEYS.tasks: ">"}, count=1)
    for n in range(1, MAX_DELIVERIES):  # taken over by one dying worker after another
        await worker.client.xclaim(KEYS.tasks, KEYS.group, f"dead-{n}", 0, [entry])
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:

        async def failed() -> list[Reply]:
            found: list[tuple[str, dict[str, str]]] = await worker.client.xrange("replies")  # type: ignore[assignment]
            return [r for _, fields in found if (r := Reply.decode(fields)) is not None and r.kind == "failed"]

        replies = await until(failed, "the command failed on its sixth delivery", limit_s=60)
        assert "stopped answering" in replies[0].data["error"] and replies[0].worker == "survivor"
        assert not any(pending(server).values()), "acknowledged"
        assert not (tmp_path / "survivor" / "wf-x" / "poison" / "ran").exists(), "not run again"
    finally:
        stop.set()
        await serving


async def test_kill_of_a_command_no_worker_has_taken_ends_its_run_at_once(server: RedisServer, tmp_path: Path) -> None:
    """The Sandbox contract: ``kill`` stops the command and ``run`` returns cancelled, also while it only waits on
    the stream; and the command is off the stream, so a worker started later never runs it."""
    dispatcher = Dispatcher(server.url, "coordinator-test")
    sandbox = WorkerSandbox(tmp_path / "t", dispatcher=dispatcher, workflow="wf-k", task="t")
    try:
        running = asyncio.create_task(sandbox.run("touch ran"))
        await until(lambda: sandbox.running and sandbox._entry is not None, limit_s=60)
        await sandbox.kill()
        async with asyncio.timeout(60):
            result = await running
        assert result.cancelled and result.exit_code is None
        assert await dispatcher.client.xlen(KEYS.tasks) == 0, "withdrawn from the stream"
    finally:
        await dispatcher.close()
