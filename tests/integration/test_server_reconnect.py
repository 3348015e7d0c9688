"""The database server goes away mid-workflow and comes back (issue 14, point 3): the coordinator and a watcher (what
the dashboard's tree and the event log use) both reconnect; the watcher registers its live queries again (the server
forgets them with the session) and, reading the change feed on from where it was, misses nothing.

Real parts: the SurrealDB ws test server, either restarted for real (stopped with SIGTERM and started again on the
same port over its ``surrealkv://`` files: sessions and live queries gone, committed data kept) or reached through a
TCP proxy the test takes down and up again (every websocket cut while the server itself runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from db import connect
from db.errors import DatabaseUnavailable
from db.models import EventType, Task, TaskStatus, Workflow, WorkflowStatus
from db.watch import watcher_for
from engine.engine import Engine
from tests.conftest import server_settings
from tests.integration.fault_support import Live, check_consistent, make_spec
from tests.support.polling import until
from tests.support.surreal_server import RestartableServer, restartable_test_server, server_available
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.server

STATE_EVENTS = {EventType.TASK_STARTED, EventType.TASK_COMPLETED, EventType.TASK_FAILED, EventType.TASK_QUEUED}


@pytest.fixture
async def proxy(surreal_server_url: str) -> AsyncIterator[TcpProxy]:
    host, port = surreal_server_url.removeprefix("ws://").split(":")
    async with tcp_proxy((host, int(port))) as started:
        yield started


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartableServer]:
    reason = server_available()
    if reason is not None:
        pytest.skip(f"SurrealDB ws test server unavailable: {reason}")
    with restartable_test_server(tmp_path / "server") as server:
        yield server


async def test_watchers_and_the_coordinator_reconnect_after_a_server_restart_and_miss_nothing(
    restartable: RestartableServer, tmp_path: Path
) -> None:
    async def restart() -> None:
        await asyncio.to_thread(restartable.stop)
        await asyncio.to_thread(restartable.start)

    await run_through_outage(restartable.url, restart, tmp_path)
    assert restartable.restarts == 1


async def test_watchers_and_the_coordinator_reconnect_after_the_server_drops_them_and_miss_nothing(
    proxy: TcpProxy, tmp_path: Path
) -> None:
    async def cut() -> None:
        await proxy.down()
        await asyncio.sleep(1.5)  # the outage is the fault injected: long enough for reads and writes to fail
        await proxy.up()

    await run_through_outage(f"ws://127.0.0.1:{proxy.port}", cut, tmp_path)


async def run_through_outage(url: str, outage: Callable[[], Awaitable[None]], tmp_path: Path) -> None:
    """Run two chains of tasks, take the server away (``outage``) once four tasks are done, and check that the
    workflow completes and that a watcher saw every task end as the event table says it ended."""
    settings = server_settings(f"reconnect_{uuid.uuid4().hex[:8]}")
    chains = [
        {"id": f"{c}{i:02d}", "agent": "quick", "input": {"delay": 0.1}, "depends_on": [f"{c}{i - 1:02d}"] if i else []}
        for c in "ab"
        for i in range(12)
    ]
    seen_tasks: dict[str, Task] = {}
    seen_statuses: list[tuple[str, TaskStatus]] = []
    seen_workflow: list[WorkflowStatus] = []
    async with (
        connect(url, settings) as coordinator_db,
        connect(url, settings) as watcher_db,
        Engine(coordinator_db, workdir_root=tmp_path / "work") as engine,
    ):
        watcher = watcher_for(watcher_db)
        start = await watcher.position()

        async def follow() -> None:  # as the dashboard's tree and event log do, on a connection of their own
            async with contextlib.aclosing(watcher.watch_many(("workflow", "task"), since=start)) as feed:
                async for change in feed:
                    if isinstance(change.record, Task):
                        seen_tasks[change.record.key] = change.record
                        seen_statuses.append((change.record.key, change.record.status))
                    elif isinstance(change.record, Workflow):
                        seen_workflow.append(change.record.status)

        following = asyncio.create_task(follow())
        try:
            live = Live(engine)
            workflow = await engine.submit(make_spec(chains))
            await until(lambda: sum(t.status is TaskStatus.COMPLETED for t in seen_tasks.values()) >= 4)
            registered = watcher.registrations  # type: ignore[attr-defined]
            await outage()
            async with asyncio.timeout(120):
                assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
            tasks, events = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)

            def caught_up() -> bool:
                done = all(seen_tasks.get(key) is not None and seen_tasks[key].status is TaskStatus.COMPLETED
                           for key in tasks)  # fmt: skip
                return done and WorkflowStatus.COMPLETED in seen_workflow

            def state() -> str:
                done = sum(t.status is TaskStatus.COMPLETED for t in seen_tasks.values())
                return f"the watcher to see all {len(tasks)} tasks completed ({done} seen) and the workflow end"

            await until(caught_up, state, limit_s=60)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    assert watcher.registrations > registered, "the live queries were registered again after the reconnect"  # type: ignore[attr-defined]
    # What the watcher saw each task go through is what the event table says it went through.
    for key in tasks:
        told = [e.type.removeprefix("task.") for e in events if e.task == key and e.type in STATE_EVENTS]
        watched = [status.value for k, status in seen_statuses if k == key]
        assert told[-1] == watched[-1] == "completed", (key, told, watched)


async def test_a_password_in_the_url_is_never_shown_when_the_server_goes_away(restartable: RestartableServer) -> None:
    secret = f"pw-{uuid.uuid4().hex[:8]}"
    url = restartable.url.replace("ws://", f"ws://root:{secret}@")
    async with connect(url, server_settings(f"gone_{uuid.uuid4().hex[:8]}")) as db:
        await db.query("RETURN 1")
        await asyncio.to_thread(restartable.stop)
        with pytest.raises(DatabaseUnavailable) as lost:
            async with asyncio.timeout(60):
                while True:  # the first query after the cut may still be answered from what was in flight
                    await db.query("RETURN 1")
    assert secret not in str(lost.value) and "***" in str(lost.value), str(lost.value)
