"""Watchpoints in the dashboard, driven with Pilot over a real engine on ``mem://`` and real shell processes:
``w`` and typing add one, a trigger raises the banner with the task selected and its shell frozen, the banner's keys
resume (or remove and resume), a bad expression shows its column and adds nothing, ``d`` in the list removes one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psutil
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label

from db.models import WorkflowStatus
from engine.engine import Engine
from tests.functional.test_dashboard import spec, status_of, tree_of
from tests.integration.test_cli_engine import kill_leftovers, processes_with
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.watchpoints import WatchpointsScreen
from tui.widgets.watch_banner import WatchBanner

WATCH = 'output ~ "ALARM"'


@pytest.fixture
def marker() -> Iterator[str]:
    """A word in this test's shell commands, to find (and at the end kill) its processes by pid."""
    word = f"agentdeck-watch-{uuid.uuid4().hex[:10]}"
    yield word
    kill_leftovers(word)


def alarm_task(task: str, marker: str) -> dict[str, str]:
    """A shell task that waits for a file ``go`` in its working directory (``release``), prints an ALARM line, then
    counts a while and ends. (Its own directory: a bubblewrap sandbox has a private /tmp.)"""
    run = (
        f": {marker}; while [ ! -f go ]; do sleep 0.05; done; echo 'ALARM temperature 97'; "
        "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo $i; sleep 0.05; done"
    )
    return {"id": task, "agent": "sh", "run": run}


async def release(engine: Engine, workflow: str, task: str) -> None:
    """Let ``alarm_task`` print its ALARM line."""
    workdir = engine.workdir_for(workflow, task)
    await until(workdir.is_dir)
    (workdir / "go").touch()


def shells(marker: str) -> list[psutil.Process]:
    return [p for p in processes_with(marker) if p.name() == "sh"]


def frozen(marker: str) -> bool:
    found = shells(marker)
    return bool(found) and all(p.status() == psutil.STATUS_STOPPED for p in found)


def main_screen(app: AgentDeckApp) -> MainScreen:
    screen = app.screen_stack[1] if len(app.screen_stack) > 1 else app.screen
    assert isinstance(screen, MainScreen), app.screen_stack
    return screen


def banner(app: AgentDeckApp) -> WatchBanner:
    return main_screen(app).query_one(WatchBanner)


def banner_text(app: AgentDeckApp) -> str:
    shown = banner(app)
    return str(shown.render()) if shown.has_class("-up") and shown.display else ""


def check_text(app: AgentDeckApp) -> str:
    return str(app.screen.query_one("#watch-check", Label).render())


async def started(app: AgentDeckApp, engine: Engine, pilot: Pilot[int]) -> str:
    await until(lambda: app.started_workflow is not None and engine.is_running(app.started_workflow), pilot=pilot)
    workflow = app.started_workflow
    assert workflow is not None
    return workflow


async def test_w_adds_a_watchpoint_that_pauses_with_a_banner_and_g_resumes(engine: Engine, marker: str) -> None:
    app = make_app(engine, start=spec([alarm_task("heat", marker)]))
    async with app.run_test(size=(120, 40)) as pilot:
        wf = await started(app, engine, pilot)
        await until(lambda: tree_of(app).tasks.get(wf, {}).get("heat") is not None, pilot=pilot)
        tree_of(app).select_task(wf, "heat")
        await until(lambda: main_screen(app).selected_task == "heat", pilot=pilot)

        await pilot.press("w")
        await until(lambda: isinstance(app.screen, WatchpointsScreen), pilot=pilot)
        await pilot.press(*WATCH)
        await until(lambda: "reads well" in check_text(app), pilot=pilot)
        await pilot.press("enter")

        async def added() -> bool:
            return [(w.when, w.task) for w in await engine.watchpoints(wf)] == [(WATCH, "heat")]

        await until(added, pilot=pilot)
        table = app.screen.query_one(DataTable)
        await until(lambda: table.row_count == 1, pilot=pilot)
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
        main_screen(app).query_one("#tree").focus()
        main_screen(app).show_task(wf, None)  # the workflow selected, not the task: the banner selects the task
        await until(lambda: main_screen(app).selected_task is None, pilot=pilot)

        await release(engine, wf, "heat")
        await until(lambda: "ALARM temperature 97" in banner_text(app), lambda: f"banner: {banner_text(app)!r}",
                    pilot=pilot)  # fmt: skip
        text = banner_text(app)
        assert WATCH in text and "ui-test" in text and "heat" in text, text
        assert main_screen(app).selected_task == "heat"
        cursor = tree_of(app).cursor_node
        assert cursor is not None and cursor.data is not None and cursor.data.task == "heat"
        await until(lambda: frozen(marker), lambda: f"the shell stopped: {[p.status() for p in shells(marker)]}",
                    pilot=pilot)  # fmt: skip

        async def status_is(wanted: WorkflowStatus) -> bool:
            return await status_of(engine, wf) is wanted

        await until(lambda: status_is(WorkflowStatus.PAUSED), pilot=pilot)

        await pilot.press("g")
        await until(lambda: banner_text(app) == "", pilot=pilot)
        await until(lambda: status_is(WorkflowStatus.COMPLETED), pilot=pilot)
        assert [w.triggered for w in await engine.watchpoints(wf)] == [1]


async def test_a_bad_expression_shows_its_column_and_adds_nothing(engine: Engine, marker: str) -> None:
    app = make_app(engine, start=spec([alarm_task("heat", marker)]))
    async with app.run_test(size=(80, 24)) as pilot:
        wf = await started(app, engine, pilot)
        await until(lambda: main_screen(app).selected_workflow == wf, pilot=pilot)
        await pilot.press("w")
        await until(lambda: isinstance(app.screen, WatchpointsScreen), pilot=pilot)
        await pilot.press(*"cost_usd >> 1")
        await until(lambda: "column 11" in check_text(app), lambda: f"the check said {check_text(app)!r}", pilot=pilot)
        assert app.screen.query_one(Input).has_class("-invalid")
        await pilot.press("enter")
        await until(lambda: "column 11" in check_text(app), pilot=pilot)
        assert isinstance(app.screen, WatchpointsScreen), "a bad expression closed the screen"
        # Then a good one: once it is listed, it must be the only one (the bad one was never sent).
        app.screen.query_one(Input).value = ""
        await pilot.press(*"cost_usd > 1")
        await until(lambda: "reads well" in check_text(app), pilot=pilot)
        await pilot.press("enter")

        async def listed() -> list[str]:
            return [w.when for w in await engine.watchpoints(wf)]

        await until(listed, pilot=pilot)
        assert await listed() == ["cost_usd > 1"]
        await engine.cancel(wf)


async def test_d_in_the_list_removes_the_highlighted_watchpoint(engine: Engine, marker: str) -> None:
    app = make_app(engine, start=spec([alarm_task("heat", marker)]))
    async with app.run_test(size=(120, 40)) as pilot:
        wf = await started(app, engine, pilot)
        kept = await engine.add_watchpoint(wf, "running > 1h")
        gone = await engine.add_watchpoint(wf, "failures >= 3 within 10m", name="flaky")
        await until(lambda: main_screen(app).selected_workflow == wf, pilot=pilot)
        commands = {c.title: c.callback for c in app.get_system_commands(main_screen(app))}
        assert "Add a watchpoint…" in commands
        app.call_later(commands["Watchpoints of this workflow"])  # as the command palette runs it
        await until(lambda: isinstance(app.screen, WatchpointsScreen), pilot=pilot)
        table = app.screen.query_one(DataTable)
        await until(lambda: table.row_count == 2, pilot=pilot)
        assert app.screen.focused is table
        await pilot.press("down", "d")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")

        async def remaining() -> list[str]:
            return [w.id for w in await engine.watchpoints(wf)]

        await until(lambda: isinstance(app.screen, WatchpointsScreen) and table.row_count == 1, pilot=pilot)
        assert await remaining() == [kept.id]
        assert gone.id not in await remaining()
        await engine.cancel(wf)


async def test_a_trigger_in_another_workflow_selects_it_and_a_resume_elsewhere_takes_the_banner_down(
    engine: Engine, marker: str
) -> None:
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        watched = await engine.submit(spec([alarm_task("heat", marker)]), {})
        await engine.add_watchpoint(watched, WATCH)
        other = await engine.submit(spec([alarm_task("idle", marker)], name="other"), {})
        await until(lambda: other in tree_of(app).workflows, pilot=pilot)
        main_screen(app).show_task(other)
        await until(lambda: main_screen(app).selected_workflow == other, pilot=pilot)

        await release(engine, watched, "heat")
        await until(lambda: "ALARM" in banner_text(app), pilot=pilot)
        assert main_screen(app).selected_workflow == watched
        assert main_screen(app).selected_task == "heat"
        await until(lambda: engine.is_paused(watched), pilot=pilot)

        await engine.resume(watched)  # as `agentdeck workflows resume` from another terminal would
        await until(lambda: banner_text(app) == "", pilot=pilot)
        await engine.cancel(other)


async def test_d_on_the_banner_removes_the_watchpoint_and_resumes(engine: Engine, marker: str) -> None:
    app = make_app(engine, start=spec([alarm_task("heat", marker)]))
    async with app.run_test(size=(80, 24)) as pilot:
        wf = await started(app, engine, pilot)
        await engine.add_watchpoint(wf, WATCH, "heat")
        await release(engine, wf, "heat")
        await until(lambda: "ALARM" in banner_text(app), pilot=pilot)
        await until(lambda: engine.is_paused(wf), pilot=pilot)
        await pilot.press("d")

        async def done() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.COMPLETED

        await until(done, pilot=pilot)
        assert await engine.watchpoints(wf) == []
        assert banner_text(app) == ""


async def test_a_workflow_a_watchpoint_paused_before_the_dashboard_opened_has_its_banner(
    engine: Engine, marker: str
) -> None:
    wf = await engine.submit(spec([alarm_task("heat", marker)]), {})
    await engine.add_watchpoint(wf, WATCH, "heat")
    await release(engine, wf, "heat")
    await until(lambda: engine.is_paused(wf))
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: "ALARM temperature 97" in banner_text(app), pilot=pilot)
        assert main_screen(app).selected_task == "heat"
        await pilot.press("g")

        async def done() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.COMPLETED

        await until(done, pilot=pilot)
        assert banner_text(app) == ""


async def test_k_on_the_banner_asks_then_cancels_the_workflow_it_names(engine: Engine, marker: str) -> None:
    app = make_app(engine, start=spec([alarm_task("heat", marker)]))
    async with app.run_test(size=(120, 40)) as pilot:
        wf = await started(app, engine, pilot)
        await engine.add_watchpoint(wf, WATCH)
        await release(engine, wf, "heat")
        await until(lambda: "ALARM" in banner_text(app), pilot=pilot)
        await until(lambda: engine.is_paused(wf), pilot=pilot)
        await pilot.press("k")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")

        async def cancelled() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.CANCELLED

        await until(cancelled, pilot=pilot)
        await until(lambda: banner_text(app) == "", pilot=pilot)
        await until(lambda: not shells(marker), lambda: f"the shell is gone: {shells(marker)}", pilot=pilot)
