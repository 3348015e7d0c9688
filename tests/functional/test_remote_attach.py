"""The dashboard on another machine's run (issue 14, point 2): ``agentdeck ui --db ws://… --redis redis://…`` shows
and controls a workflow that an engine in another process runs on a SurrealDB server, with events over Redis.

Everything is real: the SurrealDB ws test server, a ``redis-server`` of the test's own (with a password), a headless
``agentdeck run`` in another process, its sandboxed shell task (frozen state read with psutil), and the dashboard
driven with Pilot. No socket is shared: the dashboard's controls reach the other engine through the database's
control requests, its output through Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.functional.test_attach import main_screen
from tests.functional.test_dashboard import tree_text
from tests.integration.test_cli_engine import (
    WORKFLOWS,
    RunningWorkflow,
    clean_env,
    kill_leftovers,
    processes_with,
    tick,
)
from tests.support.polling import until
from tests.support.procstate import frozen as is_frozen
from tests.support.redis_server import RedisServer, own_redis
from tui.app import make_app
from tui.screens.confirm import ConfirmScreen
from tui.widgets.agent_grid import AgentGrid

SIZE = (120, 36)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with own_redis(tmp_path / "redis") as server:
        yield server


def shells(marker: str) -> list[psutil.Process]:
    return [p for p in processes_with(marker) if p.name() == "sh"]


def frozen(marker: str) -> bool:
    found = shells(marker)
    return bool(found) and all(is_frozen(p) for p in found)


def thawed(marker: str) -> bool:
    found = shells(marker)
    return bool(found) and all(p.status() != psutil.STATUS_STOPPED for p in found)


async def test_ui_on_a_server_database_and_redis_shows_and_controls_another_process_run(
    surreal_server_url: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"agentdeck-test-{uuid.uuid4().hex}"
    server = {
        "AGENTDECK_DB_NAMESPACE": f"remote_{uuid.uuid4().hex[:8]}",
        "AGENTDECK_DB_USER": "root",
        "AGENTDECK_DB_PASS": "root",
    }
    for name, value in server.items():
        monkeypatch.setenv(name, value)  # the dashboard's side: the same namespace and credentials
    env = clean_env(tmp_path, **server)
    args = ["run", str(WORKFLOWS / "cli_counter.yaml"), "--headless", "--json", "--db", surreal_server_url]
    run = RunningWorkflow([*args, "--redis", redis_server.url, "--var", f"marker={marker}"], env, tmp_path / "err")
    try:
        created = run.wait_for(lambda e: True, "the first event")
        workflow = created["workflow"]
        run.wait_for(lambda e: (tick(e) or 0) >= 3, "tick 3")
        app = make_app(db_url=surreal_server_url, redis_url=redis_server.url, attach=True, serve_controls=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = await until(lambda: main_screen(app), pilot=pilot)
            await until(lambda: "▶ cli-counter" in tree_text(app) and "▶ count" in tree_text(app), pilot=pilot)
            await until(lambda: screen.selected_workflow == workflow, pilot=pilot)
            grid = screen.query_one(AgentGrid)
            await until(lambda: (workflow, "count") in grid.panes, pilot=pilot)
            pane = grid.panes[(workflow, "count")]
            seen = pane.lines_seen
            await until(lambda: pane.lines_seen > seen + 3, "live output over Redis", pilot=pilot)

            await pilot.press("p")
            await until(lambda: frozen(marker), "the counting shell stopped (T) in the other process", pilot=pilot)
            await until(lambda: "⏸ cli-counter" in tree_text(app), pilot=pilot)
            await pilot.press("p")
            await until(lambda: thawed(marker), "the counting shell running again", pilot=pilot)
            await until(lambda: "▶ cli-counter" in tree_text(app), pilot=pilot)

            await pilot.press("c")
            await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
            await pilot.press("y")
            code = await asyncio.to_thread(run.wait_exit, 120)
            assert code == 1, run.stderr()
            await until(lambda: not shells(marker), "the counting shell killed", pilot=pilot)
            await until(lambda: "■ cli-counter" in tree_text(app), pilot=pilot)
            await pilot.press("q")
        assert app.failure is None
    finally:
        run.stop()
        kill_leftovers(marker)
