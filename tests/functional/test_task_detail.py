"""The task detail (Enter on a task in the tree), driven with Pilot over a real engine (mem://), real shell
processes and a real LangGraph graph: every attempt's output with how each ended, the data, following a running
task, and a graph task's nodes."""

from __future__ import annotations

from typing import Any

from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import DataTable, RichLog, Static, TabbedContent

from engine.engine import Engine
from tests.functional.test_dashboard import spec
from tests.functional.test_graph_dashboard import graph_spec, tree_of
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens.main import MainScreen
from tui.screens.task_detail import TaskDetailScreen

SIZE = (120, 36)
#: Fails its first attempt (after printing), passes the second: the working directory keeps the mark.
FLAKY = "echo first try; if [ ! -f .tried ]; then touch .tried; echo boom >&2; exit 3; fi; echo second try worked"


def log_text(app: AgentDeckApp) -> str:
    return "\n".join(line.text for line in app.screen.query_one("#detail-log", RichLog).lines)


def shown(widget: Widget) -> str:
    """A widget's text as drawn on screen."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.size)))


def head_text(app: AgentDeckApp) -> str:
    return shown(app.screen.query_one("#detail-head", Static))


async def open_detail(app: AgentDeckApp, pilot: Any, task: str) -> TaskDetailScreen:
    """Put the tree's cursor on ``task`` and press Enter, as a person would."""
    main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
    assert main.selected_workflow is not None
    tree = tree_of(app)
    tree.focus()
    await until(lambda: (main.selected_workflow, task) in tree._node_index, pilot=pilot)
    tree.select_task(main.selected_workflow, task)
    row = tree._node_index[(main.selected_workflow, task)]
    # As a person would: Enter once the cursor is seen on the row and the tree has the keyboard.
    await until(lambda: app.focused is tree and tree.cursor_node is row and tree.cursor_line == row.line, pilot=pilot)
    await pilot.press("enter")

    def where() -> str:
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        return f"the task's detail open (screen {app.screen!r}, focus {app.focused!r}, cursor {cursor})"

    await until(lambda: isinstance(app.screen, TaskDetailScreen), where, pilot=pilot)
    assert isinstance(app.screen, TaskDetailScreen)
    return app.screen


async def test_enter_on_a_retried_task_shows_each_attempt_output_and_how_it_ended(engine: Engine) -> None:
    workflow = spec([{"id": "flaky", "agent": "sh", "run": FLAKY, "retries": 1}], defaults={"retry_backoff": "10ms"})
    app = make_app(engine, start=workflow)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await until(lambda: engine.is_running(wf) is False and wf in tree_of(app).workflows, pilot=pilot)
        await until(lambda: tree_of(app).workflows[wf].status.value == "completed", pilot=pilot)
        await open_detail(app, pilot, "flaky")
        await until(lambda: "second try worked" in log_text(app), pilot=pilot)
        text = log_text(app)
        # Both attempts, in order, each under its rule and with how it ended; stderr is there too.
        order = ["attempt 1", "first try", "boom", "failed, retried", "attempt 2", "second try worked", "completed"]
        positions = [text.index(part) for part in order]
        assert positions == sorted(positions), text
        assert "exit" in text.split("failed, retried", 1)[1].splitlines()[0], "the retry's reason is on its line"
        await until(lambda: "completed" in head_text(app) and "attempt 2/2" in head_text(app), pilot=pilot)

        await pilot.press("d")
        assert app.screen.query_one("#detail-tabs", TabbedContent).active == "detail-data"
        await pilot.pause()
        data = shown(app.screen.query_one("#detail-json", Static))
        # The input (none given: {}) and the output the shell task declared: its stdout lines, as JSON.
        assert [line.strip() for line in data.splitlines()[:2]] == ["input", "{}"], data
        assert "output" in data and '"exit_code": 0' in data and '"second try worked"' in data, data

        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)


async def test_the_detail_of_a_running_task_follows_its_output_until_it_ends(engine: Engine) -> None:
    # Prints a line, then waits for a file the test writes once the detail is open: the line after it can only
    # reach the detail live, not from the history read when it opened.
    app = make_app(engine, start=spec([{"id": "slow", "agent": "sh", "run": "echo before; "
                                        "while [ ! -f go ]; do sleep 0.05; done; echo after the wait"}]))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await until(lambda: "slow" in {k for w, k in tree_of(app)._node_index if w == wf}, pilot=pilot)

        async def printed_before() -> bool:
            await engine.recorder.flush()
            return any("before" in e.output_lines for e in await engine.stores.events.list(wf))

        await until(printed_before, pilot=pilot)
        await open_detail(app, pilot, "slow")
        await until(lambda: "before" in log_text(app), pilot=pilot)
        assert "after the wait" not in log_text(app)
        assert "running" in head_text(app)
        workdir = engine.workdir_root / wf / "slow"
        (workdir / "go").touch()
        await until(lambda: "after the wait" in log_text(app), pilot=pilot)
        await until(lambda: "└ completed" in log_text(app), pilot=pilot)
        await until(lambda: "completed" in head_text(app), pilot=pilot)


async def test_a_graph_task_detail_lists_its_node_executions(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("factory"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await until(lambda: wf in tree_of(app).workflows and tree_of(app).workflows[wf].status.value == "completed",
                    pilot=pilot)  # fmt: skip
        screen = await open_detail(app, pilot, "build")
        await until(lambda: screen.detail is not None, pilot=pilot)
        stored = sorted(await engine.stores.graph_nodes.list(wf, "build"), key=lambda n: (n.started_at, n.step))
        await pilot.press("n")
        assert app.screen.query_one("#detail-tabs", TabbedContent).active == "detail-nodes"
        table = app.screen.query_one("#detail-node-table", DataTable)
        nodes = [table.get_row_at(i)[1] for i in range(table.row_count)]
        assert nodes == [n.node for n in stored] and len(nodes) >= 2, nodes
