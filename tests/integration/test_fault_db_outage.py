"""The database server goes away mid-run and comes back (issue 9: "what survives what: DB unreachable").

The engine talks to a real SurrealDB server (``ws://``) through a TCP proxy the test controls: the proxy cuts
every connection and refuses new ones for a moment, then lets them through again — a network outage, not a fake.
The engine must keep its changes in memory while the server cannot be reached and store them once it can: the
workflow completes, the store holds every task completed and every published event, nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from tests.conftest import server_settings
from tests.integration.fault_support import Live, check_consistent, make_spec
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.server


@pytest.fixture
async def outage(surreal_server_url: str) -> AsyncIterator[TcpProxy]:
    host, port = surreal_server_url.removeprefix("ws://").split(":")
    proxy = TcpProxy((host, int(port)))
    await proxy.up()
    yield proxy
    with contextlib.suppress(Exception):
        await proxy.down()


async def test_a_run_outlives_a_database_outage_and_stores_everything_after_it(
    outage: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = server_settings(f"outage_{uuid.uuid4().hex[:8]}")
    tasks = [
        {"id": f"c{i:02d}", "agent": "quick", "input": {"delay": 0.1}, "depends_on": [f"c{i - 1:02d}"] if i else []}
        for i in range(20)
    ]
    with caplog.at_level(logging.WARNING):
        async with (
            connect(f"ws://127.0.0.1:{outage.port}", settings) as db,
            Engine(db, workdir_root=tmp_path / "work") as engine,
        ):
            live = Live(engine)
            workflow = await engine.submit(make_spec(tasks))
            await live.wait_for(workflow, "task.completed", count=5)
            await outage.down()
            # The outage's length is the fault injected: long enough for several writes to fail.
            await asyncio.sleep(1.5)
            await outage.up()
            async with asyncio.timeout(60):
                assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
            stored, _ = await check_consistent(engine, workflow, live, WorkflowStatus.COMPLETED)
            assert {t.status for t in stored.values()} == {TaskStatus.COMPLETED}
    dropped = [r.getMessage() for r in caplog.records if "dropped a change" in r.getMessage()]
    assert not dropped, f"{len(dropped)} changes dropped, the first: {dropped[0]}"
    assert any("unreachable" in r.getMessage() for r in caplog.records), "the outage was never noticed"
