"""Where a task runs, on the dashboard: a task whose command an ``agentdeck worker`` process took says which worker
in its pane's header (``on host:pid``) and in the event log (``task.assigned``).

Real parts: a ``redis-server`` of the test's own (with a password), a worker process started with the command line,
the engine in the test as coordinator, and the dashboard driven with Pilot.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Label

from db import connect
from db.models import EventType
from engine.engine import Engine
from tests.functional.test_dashboard import spec
from tests.integration.test_workers import LEASE_S, workers
from tests.support.polling import until
from tests.support.redis_server import RedisServer, own_redis
from tui.app import make_app
from tui.screens.workers import WorkersScreen
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.agent_pane import AgentPane
from tui.widgets.event_log import EventLog, event_line

WAIT = "echo started; while [ ! -f go ]; do sleep 0.05; done"


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisServer]:
    monkeypatch.setenv("AGENTDECK_WORKER_LEASE", LEASE_S)
    async with own_redis(tmp_path / "redis") as started:
        yield started


@dataclass
class OnWorkers:
    """A dashboard whose engine runs one task, ``remote``, on worker processes."""

    engine: Engine
    workers: list[Any]
    app: Any
    pilot: Any
    workflow: str

    async def pane(self) -> AgentPane:
        grid: AgentGrid = self.app.screen.query_one(AgentGrid)
        await until(lambda: (self.workflow, "remote") in grid.panes, pilot=self.pilot)
        return grid.panes[(self.workflow, "remote")]


@contextlib.asynccontextmanager
async def dashboard_on_workers(
    server: RedisServer, tmp_path: Path, count: int, concurrency: int, ready: bool = False
) -> AsyncIterator[OnWorkers]:
    """Workers started, the engine (in the test) as coordinator, the dashboard started on the workflow."""
    workflow_spec = spec([{"id": "remote", "agent": "sh", "run": WAIT, "sandbox": "worker"}])
    async with (
        connect("mem://") as db,
        Engine(db, redis_url=server.url, workdir_root=tmp_path / "engine") as engine,
    ):
        with workers(server, tmp_path, count=count, concurrency=concurrency) as started:
            if ready:
                await until(lambda: all(w.ready() for w in started), limit_s=60)
            app = make_app(engine, start=workflow_spec)
            async with app.run_test(size=(120, 36)) as pilot:
                await until(lambda: app.started_workflow is not None, pilot=pilot)
                assert app.started_workflow is not None
                yield OnWorkers(engine, started, app, pilot, app.started_workflow)


async def test_a_pane_and_the_event_log_name_the_worker_that_runs_the_task(server: RedisServer, tmp_path: Path) -> None:
    async with dashboard_on_workers(server, tmp_path, count=1, concurrency=2) as run:
        worker, app, pilot, workflow = run.workers[0], run.app, run.pilot, run.workflow
        pane = await run.pane()
        await until(lambda: pane.lines_seen >= 1, "the command's first line, from the worker", pilot=pilot)
        await until(lambda: f"on {worker.name}" in pane.header_text(), pilot=pilot)

        await pilot.press("2")
        log = app.screen.query_one(EventLog)
        row = f"{'task.assigned':<20} remote           on worker {worker.name}"
        await until(lambda: any(row in event_line(e).plain for e in log.shown()), pilot=pilot)
        (worker.root / workflow / "remote" / "go").touch()
        await until(lambda: not run.engine.is_running(workflow), pilot=pilot)
        events = await run.engine.stores.events.list(workflow)
    assigned = [e.data["worker"] for e in events if e.type == EventType.TASK_ASSIGNED]
    assert assigned == [worker.name], "one command, taken once, by that worker"


async def test_a_pane_whose_worker_dies_shows_the_takeover_and_runs_on_as_the_same_attempt(
    server: RedisServer, tmp_path: Path
) -> None:
    async with dashboard_on_workers(server, tmp_path, count=2, concurrency=1, ready=True) as run:
        started, pilot, workflow = run.workers, run.pilot, run.workflow
        pane = await run.pane()
        await until(lambda: pane.worker is not None and pane.lines_seen >= 1, pilot=pilot)
        first = next(w for w in started if w.name == pane.worker)
        second = next(w for w in started if w is not first)
        first.stop()  # SIGKILL: its lease lapses and the other worker takes the command over

        await until(lambda: f"on {second.name}" in pane.header_text(), "the takeover", pilot=pilot)
        await until(lambda: pane.lines_seen >= 3, pilot=pilot)  # started, the note, started again
        assert "running" in pane.header_text() and "attempt 2" not in pane.header_text()
        (second.root / workflow / "remote" / "go").touch()
        await until(lambda: pane.state == "completed", "the pane told the task completed", pilot=pilot)
        events = await run.engine.stores.events.list(workflow)
    assigned = [e.data["worker"] for e in events if e.type == EventType.TASK_ASSIGNED]
    assert assigned == [first.name, second.name]


async def test_shift_w_lists_the_workers_and_what_each_runs(server: RedisServer, tmp_path: Path) -> None:
    async with dashboard_on_workers(server, tmp_path, count=1, concurrency=2) as run:
        worker, app, pilot, workflow = run.workers[0], run.app, run.pilot, run.workflow
        await pilot.press("W")
        await until(lambda: isinstance(app.screen, WorkersScreen), pilot=pilot)
        screen = app.screen
        assert isinstance(screen, WorkersScreen)
        wanted = [worker.name, "up", "1/2"]
        await until(lambda: any(row[:3] == wanted and row[-1] == f"{workflow}/remote" for row in screen.rows),
                    "the worker listed as running the task", pilot=pilot)  # fmt: skip
        (worker.root / workflow / "remote" / "go").touch()
        await until(lambda: any(row[:3] == [worker.name, "up", "0/2"] for row in screen.rows),
                    "the worker listed idle once the task is done", pilot=pilot, limit_s=60)  # fmt: skip
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, WorkersScreen), pilot=pilot)


async def test_shift_w_without_redis_says_how_to_get_workers(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("W")
        await until(lambda: isinstance(app.screen, WorkersScreen), pilot=pilot)
        note = app.screen.query_one("#workers-note", Label)
        assert "no Redis" in str(note.render())
