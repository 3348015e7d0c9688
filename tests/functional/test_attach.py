"""Attaching the dashboard to a running engine (issue 12, point 5): ``agentdeck ui`` on the default embedded
database while ``agentdeck run --headless`` holds it attaches through that engine's control socket — the tree, the
panes and the controls work as in-process, pause freezes the other process's task, q detaches and leaves it
running, and when that engine ends the dashboard opens the database itself. Where it cannot attach, it says so.

Everything is real: a headless ``agentdeck run`` in another process on a ``surrealkv://`` file, its sandboxed
shell task (frozen state read with psutil), the socket, and the dashboard driven with Pilot.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from db.errors import DatabaseUnavailable, QueryFailed
from engine.attached import attach
from engine.control import ControlServer, ControlService
from engine.errors import ControlError
from engine.private_paths import control_socket_path, control_token_path
from tests.functional.test_dashboard import tree_text
from tests.integration.test_cli_engine import (
    WORKFLOWS,
    RunningWorkflow,
    agentdeck,
    clean_env,
    kill_leftovers,
    processes_with,
    tick,
)
from tests.support.polling import until
from tests.support.procstate import frozen
from tui.app import AgentDeckApp, make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.workflow_tree import WorkflowTree

SIZE = (120, 36)


@dataclass
class HeadlessRun:
    run: RunningWorkflow
    workflow: str
    url: str
    env: dict[str, str]
    marker: str

    def shells(self) -> list[psutil.Process]:
        return [p for p in processes_with(self.marker) if p.name() == "sh"]

    def frozen(self) -> bool:
        shells = self.shells()
        return bool(shells) and all(frozen(p) for p in shells)

    def thawed(self) -> bool:
        shells = self.shells()
        return bool(shells) and all(p.status() != psutil.STATUS_STOPPED for p in shells)


@pytest.fixture
def headless(tmp_path: Path) -> Iterator[HeadlessRun]:
    """The counting workflow run by ``agentdeck run --headless`` in another process, holding a file database."""
    marker = f"agentdeck-test-{uuid.uuid4().hex}"
    env = clean_env(tmp_path)
    url = f"surrealkv://{tmp_path / 'state.db'}"
    args = [
        "run",
        str(WORKFLOWS / "cli_counter.yaml"),
        "--headless",
        "--json",
        "--db",
        url,
        "--var",
        f"marker={marker}",
    ]
    run = RunningWorkflow(args, env, tmp_path / "run.stderr")
    try:
        created = run.wait_for(lambda e: True, "the first event")
        assert created["type"] == "workflow.created", created
        run.wait_for(lambda e: (tick(e) or 0) >= 3, "tick 3")
        yield HeadlessRun(run, created["workflow"], url, env, marker)
    finally:
        run.stop()
        kill_leftovers(marker)


def main_screen(app: AgentDeckApp) -> MainScreen | None:
    screen = app.screen
    if isinstance(screen, MainScreen) and any(t._loaded for t in screen.query(WorkflowTree)):
        return screen
    return None


def notices(app: AgentDeckApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_ui_attaches_to_a_headless_run_and_pause_from_the_dashboard_freezes_its_task(
    headless: HeadlessRun,
) -> None:
    run, workflow = headless.run, headless.workflow
    app = make_app(db_url=headless.url, attach=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until(lambda: main_screen(app), pilot=pilot)
        assert app.attached is not None and app.attached.owner_pid == run.proc.pid
        assert any("attached to the engine of process" in n for n in notices(app)), notices(app)
        # The tree is the other engine's, live; the running task's pane shows its output so far and what follows.
        await until(lambda: "▶ cli-counter" in tree_text(app) and "▶ count" in tree_text(app), pilot=pilot)
        await until(lambda: screen.selected_workflow == workflow, pilot=pilot)
        grid = screen.query_one(AgentGrid)
        await until(lambda: (headless.workflow, "count") in grid.panes, pilot=pilot)
        pane = grid.panes[(workflow, "count")]
        seen = pane.lines_seen
        await until(lambda: pane.lines_seen > seen + 3, pilot=pilot)  # live output keeps coming

        # p: the other process's task is frozen (its shell stopped), the tree and the owner say paused.
        await pilot.press("p")
        await until(headless.frozen, lambda: f"the counting shell stopped (T) in the other process; {notices(app)}",
                    pilot=pilot)  # fmt: skip
        await until(lambda: "⏸ cli-counter" in tree_text(app), pilot=pilot)
        await until(lambda: any(e["type"] == "workflow.paused" for e in run.snapshot()), pilot=pilot)
        assert app.attached.is_paused(workflow) is True

        # p again resumes it there.
        await pilot.press("p")
        await until(headless.thawed, "the counting shell running again", pilot=pilot)
        await until(lambda: "▶ cli-counter" in tree_text(app), pilot=pilot)

        # q detaches: the dashboard closes, the run goes on.
        await pilot.press("q")
    assert app.detached_from == run.proc.pid
    assert app.stopped == [], "detaching stopped nothing"
    assert run.proc.poll() is None, "quitting the attached dashboard stopped the run"
    count = len(run.snapshot())
    await until(lambda: len(run.snapshot()) > count + 3, "the run still printing after the dashboard quit")
    listed = await asyncio.to_thread(agentdeck, "workflows", "show", workflow, "--json", "--db", headless.url,
                                     env=headless.env)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["status"] == "running"


async def test_when_the_attached_engine_ends_the_dashboard_opens_the_database_itself(headless: HeadlessRun) -> None:
    run, workflow = headless.run, headless.workflow
    app = make_app(db_url=headless.url, attach=True, serve_controls=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: main_screen(app), pilot=pilot)
        await until(lambda: "▶ cli-counter" in tree_text(app), pilot=pilot)
        attached = app.attached
        assert attached is not None
        # Reads only: a write through the link is refused by the owner, and nothing changes.
        with pytest.raises(QueryFailed, match="only reads"):
            await attached.db.query("DELETE workflow")
        assert await attached.stores.workflows.get(workflow) is not None

        # Cancel from the dashboard: the other process kills its task and exits 1.
        await until(lambda: app.screen.selected_workflow == workflow, pilot=pilot)  # type: ignore[attr-defined]
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")
        code = await asyncio.to_thread(run.wait_exit, 120)
        assert code == 1, run.stderr()

        # The dashboard goes on, now over the database it opened itself, showing the end.
        await until(lambda: app.attached is None and main_screen(app) is not None, pilot=pilot)
        await until(lambda: "■ cli-counter" in tree_text(app), pilot=pilot)
        await until(lambda: any("opened" in n and "itself" in n for n in notices(app)), pilot=pilot)
        # It serves the socket now: another terminal's `workflows list` reaches it.
        listed = await asyncio.to_thread(agentdeck, "workflows", "list", "--json", "--db", headless.url,
                                         env=headless.env)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert {w["id"]: w["status"] for w in json.loads(listed.stdout)}[workflow] == "cancelled"
        await pilot.press("q")
    assert app.failure is None
    assert processes_with(headless.marker) == []


HOLD = """
import asyncio, sys
from db.connection import open_database

async def main():
    db = await open_database(sys.argv[1])
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await db.close()

asyncio.run(main())
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[str]:
    """A file database held open by a process that serves no control socket (nothing to attach to)."""
    url = f"surrealkv://{tmp_path / 'state.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield url
    finally:
        holder.communicate("", timeout=30)


async def test_a_database_held_without_an_engine_to_attach_to_is_a_clear_error(held: str) -> None:
    app = make_app(db_url=held, attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.return_code is not None, pilot=pilot)
    assert app.return_code == 3
    assert isinstance(app.failure, DatabaseUnavailable) and "in use" in str(app.failure)


async def test_an_engine_that_refuses_the_dashboard_is_a_clear_error_and_the_run_goes_on(
    headless: HeadlessRun,
) -> None:
    socket = control_socket_path(headless.url)
    assert socket is not None
    token = control_token_path(socket)
    real = token.read_text()
    token.write_text("0" * 64)  # as for another user, or a task that guessed: not the engine's token
    try:
        app = make_app(db_url=headless.url, attach=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.return_code is not None, pilot=pilot)
    finally:
        token.write_text(real)
    assert app.return_code == 3
    assert isinstance(app.failure, DatabaseUnavailable) and "refused" in str(app.failure)
    assert "token" in str(app.failure.hint)
    assert headless.run.proc.poll() is None


class OlderService(ControlService):
    """The control operations of an agentdeck from before attaching (served by the real ``ControlServer``): the
    CLI's operations only, so ``hello`` is unknown to it."""

    STREAMS = ()

    def __init__(self) -> None:  # no engine: nothing here is ever reached
        pass

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        raise ControlError(f"unknown control operation {op!r}")


async def test_an_engine_that_cannot_serve_a_dashboard_is_a_clear_error(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path / 'state.db'}"
    socket = control_socket_path(url)
    assert socket is not None
    server = ControlServer(OlderService(), socket)
    await server.start()
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot serve a dashboard") as raised:
            await attach(url, socket)
        assert "workflows" in raised.value.hint
    finally:
        await server.close()
