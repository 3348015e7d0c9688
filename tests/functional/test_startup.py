"""Fast start (issue 12, point 6): the dashboard's first frame is a startup screen painted before the engine's
modules load and the database opens; a database that cannot be opened ends the app with exit code 3 and the
reason kept for the command line; the dashboard refuses to draw into something that is not a terminal. Real
engine on a ``surrealkv://`` file, real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from db.errors import DatabaseUnavailable
from tests.functional.test_dashboard import COUNTER, spec
from tests.integration.test_cli_engine import RunningWorkflow, agentdeck, clean_env
from tests.support.polling import until
from tui.app import make_app
from tui.cli.dashboard import _with_owner_hint
from tui.screens.main import MainScreen
from tui.screens.startup import StartupScreen
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.workflow_tree import WorkflowTree

ROOT = Path(__file__).resolve().parents[2]
SIZE = (100, 30)


def test_the_app_module_paints_before_the_engine_loads() -> None:
    """What ``tui.app`` imports is all the first frame waits for: Textual, not the engine, SurrealDB or LangGraph."""
    probe = (
        "import json, sys; import tui.app; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'surrealdb', 'langgraph', "
        "'redis', 'engine', 'db'})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["textual"]


async def test_the_first_frame_says_what_is_opening_then_the_main_screen_follows(tmp_path: Path) -> None:
    app = make_app(db_url=f"surrealkv://{tmp_path / 'state.db'}", serve_controls=True)
    steps: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, StartupScreen), "the first screen is the startup screen"

        def step_shown() -> bool:
            if isinstance(app.screen, StartupScreen):
                steps.append(str(app.screen.query_one("#startup-step").render()))
            # Up, not only pushed: the tree has its first snapshot (quitting mid-mount trips Textual's Tabs).
            return isinstance(app.screen, MainScreen) and any(t._loaded for t in app.screen.query(WorkflowTree))

        await until(step_shown, pilot=pilot, pause_s=0.001)
    assert steps and ("loading" in steps[0] or "opening database" in steps[0]), steps
    assert app.failure is None


async def test_a_database_that_cannot_be_opened_ends_the_app_with_code_3_and_the_reason(tmp_path: Path) -> None:
    app = make_app(db_url="ws://127.0.0.1:1")  # nothing listens on port 1
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.return_code is not None, pilot=pilot)
    assert app.return_code == 3
    assert isinstance(app.failure, DatabaseUnavailable) and "127.0.0.1:1" in str(app.failure)


async def test_quitting_the_app_that_opened_its_engine_reports_what_it_stopped(tmp_path: Path) -> None:
    app = make_app(db_url=f"surrealkv://{tmp_path / 'state.db'}", serve_controls=True,
                   start=spec([{"id": "count", "agent": "sh", "run": COUNTER}]))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        await until(lambda: any(p.lines_seen >= 2 for g in app.screen.query(AgentGrid) for p in g.panes.values()),
                    pilot=pilot)  # fmt: skip
        await pilot.press("q")
    assert app.stopped == [(app.started_workflow, "ui-test")]


def test_the_dashboard_refuses_to_draw_into_a_file(tmp_path: Path) -> None:
    for command in (["ui"], ["demo"]):
        done = agentdeck(*command, env=clean_env(tmp_path))  # stderr is a pipe here
        assert done.returncode == 2, done.stderr
        assert "not a terminal" in done.stderr and "--headless" in done.stderr


async def test_a_database_held_by_a_running_engine_fails_at_once_and_says_what_reaches_it(tmp_path: Path) -> None:
    """Another agentdeck (a real headless run) holds the file database: a dashboard that needs an engine of its own
    (demo, run) cannot open it; the error names the engine's control socket and the commands that do reach its
    workflows (``ui`` attaches instead: test_attach.py)."""
    url = f"surrealkv://{tmp_path / 'state.db'}"
    workflow = tmp_path / "hold.yaml"
    workflow.write_text('name: hold\nagents: {s: {kind: shell}}\ntasks:\n  - {id: t, agent: s, run: "sleep 120"}\n')
    run = RunningWorkflow(["run", str(workflow), "--headless", "--json", "--db", url], clean_env(tmp_path),
                          tmp_path / "run.stderr")  # fmt: skip
    try:
        run.wait_for(lambda e: e["type"] == "task.started", "the holding run's task started")
        app = make_app(db_url=url, serve_controls=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.return_code is not None, pilot=pilot)
        assert app.return_code == 3 and app.failure is not None
        reported = _with_owner_hint(app.failure, url)
        assert isinstance(reported, DatabaseUnavailable)
        assert "in use by another agentdeck process" in str(reported) and ".control.sock" in str(reported)
        assert f"agentdeck ui --db {url}` attaches" in reported.hint and "agentdeck workflows list|" in reported.hint
    finally:
        run.stop()
