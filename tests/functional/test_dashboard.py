"""The dashboard driven with Pilot: a key press → an engine state change → the screen shows it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import Label
from textual.widgets._footer import FooterKey

from db.models import Task, TaskStatus, Workflow, WorkflowStatus
from db.watch import Change
from engine.engine import Engine
from engine.events import output_lines
from engine.spec import WorkflowSpec
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.timeline import CheckpointTimeline
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.event_log import EventLog
from tui.widgets.event_rows import EventRows
from tui.widgets.workflow_tree import WorkflowTree

STEPS = "tests.integration.workflows.steps"
COUNTER = "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo $i; sleep 0.05; done"


def spec(tasks: list[Any], **extra: Any) -> WorkflowSpec:
    agents = {"sh": {"kind": "shell"}, "rec": {"kind": "python", "callable": f"{STEPS}:record"}}
    return WorkflowSpec.model_validate({"name": "ui-test", "agents": agents, "tasks": tasks, **extra})


def tree_of(app: AgentDeckApp) -> WorkflowTree:
    return app.screen.query_one(WorkflowTree)


def tree_text(app: AgentDeckApp) -> str:
    tree = tree_of(app)
    lines = []
    for index in range(tree.last_line + 1):
        node = tree.get_node_at_line(index)
        if node is not None:
            lines.append(str(node.label))
    return "\n".join(lines)


async def status_of(engine: Engine, workflow: str) -> WorkflowStatus:
    found = await engine.stores.workflows.get(workflow)
    assert found is not None
    return found.status


async def test_the_tree_shows_the_workflow_and_its_tasks_as_committed(engine: Engine) -> None:
    app = make_app(engine, start=spec([{"id": "hello", "agent": "sh", "run": "echo hi"}]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        await until(lambda: "✔ ui-test" in tree_text(app) and "✔ hello" in tree_text(app), pilot=pilot)
        assert isinstance(app.screen, MainScreen)


async def test_p_pauses_the_running_process_and_p_again_resumes(engine: Engine) -> None:
    app = make_app(engine, start=spec([{"id": "count", "agent": "sh", "run": COUNTER}]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.started_workflow is not None and engine.is_running(app.started_workflow), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: any(p.lines_seen >= 3 for p in grid.panes.values()), pilot=pilot)
        await pilot.press("p")

        async def paused() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.PAUSED

        await until(paused, pilot=pilot)
        await until(lambda: "⏸ ui-test" in tree_text(app), pilot=pilot)
        pane = next(iter(grid.panes.values()))
        seen = pane.lines_seen
        await pilot.pause(0.8)
        assert pane.lines_seen == seen, "output kept coming while paused"
        await pilot.press("p")

        async def running_again() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.RUNNING

        await until(running_again, pilot=pilot)
        await until(lambda: pane.lines_seen > seen, pilot=pilot)


async def test_a_quick_double_p_pauses_then_resumes(engine: Engine) -> None:
    # The second p comes before the tree shows the pause: it must resume (decided from the engine's state when the
    # control runs, after the first), not pause again.
    app = make_app(engine, start=spec([{"id": "count", "agent": "sh", "run": COUNTER}]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.started_workflow is not None and engine.is_running(app.started_workflow), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await pilot.press("p", "p")

        async def paused_then_resumed() -> bool:
            await engine.recorder.flush()
            kinds = [e.type for e in await engine.stores.events.list(wf)]
            return "workflow.resumed" in kinds and kinds.index("workflow.paused") < kinds.index("workflow.resumed")

        await until(paused_then_resumed, pilot=pilot)
        assert engine.is_paused(wf) is False
        await engine.cancel(wf)


async def test_c_asks_then_cancels_for_real(engine: Engine) -> None:
    app = make_app(engine, start=spec([{"id": "count", "agent": "sh", "run": COUNTER}]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.started_workflow is not None and engine.is_running(app.started_workflow), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await until(lambda: isinstance(app.screen, MainScreen) and app.screen.selected_workflow == wf, pilot=pilot)
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("n")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
        assert engine.is_running(wf), "answering no must not cancel"
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")

        async def cancelled() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.CANCELLED

        await until(cancelled, pilot=pilot)
        await until(lambda: "■ ui-test" in tree_text(app) and "■ count" in tree_text(app), pilot=pilot)


async def test_r_retries_the_selected_task(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    tasks = [{"id": "a", "agent": "rec", "input": {"log": str(log), "delay": 0}}]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: "✔ a" in tree_text(app), pilot=pilot)
        tree = tree_of(app)
        tree.focus()
        # The tree puts its cursor on the selected workflow in its next frame: only then is "down" its first task.
        await until(lambda: tree.cursor_line == 0, pilot=pilot)
        await pilot.press("down")  # from the workflow to its first task
        await until(lambda: isinstance(app.screen, MainScreen) and app.screen.selected_task == "a", pilot=pilot)
        await pilot.press("r")
        await until(lambda: log.exists() and log.read_text().split() == ["a", "a"], pilot=pilot)
        await until(lambda: "✔ a" in tree_text(app) and "↻1" in tree_text(app), pilot=pilot)  # the second attempt shows


async def test_b_opens_the_timeline_and_rolls_back_after_confirming(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    keys = ["a", "b", "c"]
    tasks = [
        {"id": k, "agent": "rec", "input": {"log": str(log), "delay": 0}, "depends_on": [keys[i - 1]] if i else []}
        for i, k in enumerate(keys)
    ]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(140, 44)) as pilot:
        await until(lambda: "✔ ui-test" in tree_text(app), pilot=pilot)
        await until(
            lambda: isinstance(app.screen, MainScreen) and app.screen.selected_workflow is not None, pilot=pilot
        )
        await pilot.press("b")
        await until(lambda: isinstance(app.screen, CheckpointTimeline), pilot=pilot)
        await pilot.press("up", "up")  # from the newest (#3, after c) to #1 (after a)
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")
        await until(lambda: log.exists() and log.read_text().split() == ["a", "b", "c", "b", "c"], pilot=pilot)
        await until(lambda: "✔ ui-test" in tree_text(app), pilot=pilot)
        log_widget = app.screen.query_one(EventLog)
        await until(lambda: any(e.type == "workflow.rolled_back" for e in log_widget.events), pilot=pilot)


async def test_question_mark_shows_help_and_escape_closes_it(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot=pilot)
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)


async def test_slash_filters_the_event_log(engine: Engine) -> None:
    tasks = [{"id": "good", "agent": "sh", "run": "echo fine"}, {"id": "bad", "agent": "sh", "run": "exit 4"}]
    app = make_app(engine, start=spec(tasks, failure_policy="continue"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: "✘ ui-test" in tree_text(app), pilot=pilot)
        await pilot.press("slash")
        await pilot.press(*"task.failed")
        log = app.screen.query_one(EventLog)
        await until(lambda: log.needle == "task.failed", pilot=pilot)
        shown = log.shown()
        assert [(e.type, e.task) for e in shown] == [("task.failed", "bad")]
        assert app.screen.query_one("#event-lines", EventRows).row_count == 1


async def test_a_flood_of_output_keeps_the_ui_responsive(engine: Engine) -> None:
    # 20,000 lines in 2 seconds: 20 bursts of 1,000 lines, 0.1 s apart.
    flood = (
        'python3 -c "import sys, time\nfor b in range(20):\n'
        "    sys.stdout.write(''.join(f'line {b * 1000 + i}\\\\n' for i in range(1000)))\n"
        '    sys.stdout.flush()\n    time.sleep(0.1)"'
    )
    tasks = [{"id": "flood", "agent": "sh", "run": flood}]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(120, 40)) as pilot:
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: any(p.lines_seen > 1000 for p in grid.panes.values()), pilot=pilot)
        # A key press during the flood, sent as the terminal driver would (Pilot.press waits for the process to
        # go idle, up to 2 s, which a flood never lets it do), must be handled within a second.
        assert app._driver is not None
        key = events.Key("question_mark", "?")
        key.set_sender(app)
        app._driver.send_message(key)
        async with asyncio.timeout(1.0):
            while not isinstance(app.screen, HelpScreen):  # noqa: ASYNC110 - polling the screen stack is the test
                await asyncio.sleep(0.01)
        pane = next(iter(grid.panes.values()))
        assert pane.lines_seen < 20_000, "the key arrived after the flood, not during it"
        await pilot.press("escape")
        wf = app.started_workflow
        assert wf is not None
        status = await asyncio.wait_for(engine.wait(wf), 60)
        assert status is WorkflowStatus.COMPLETED
        task = await engine.stores.tasks.get(wf, "flood")
        assert task is not None and task.status is TaskStatus.COMPLETED
        outputs = [e for e in await engine.stores.events.list(wf) if e.type == "task.output"]
        lines = [line for e in outputs for line in output_lines(e)]
        assert len(lines) == 20_000, "the engine recorded every line whatever the UI did"


async def test_shift_r_resumes_a_workflow_whose_engine_died(engine: Engine, tmp_path: Path) -> None:
    """A workflow left 'running' by a dead engine is offered on start and resumed with shift+R."""
    log = tmp_path / "log.txt"
    crashed = spec(
        [
            {"id": "done", "agent": "rec", "input": {"log": str(log), "delay": 0}},
            {"id": "todo", "agent": "rec", "input": {"log": str(log), "delay": 0}, "depends_on": ["done"]},
        ]
    )
    wf = await engine.submit(crashed)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    # Make it look like its engine died after "done": running, owned by someone else, "todo" still pending.
    await engine.stores.tasks.update(wf, "todo", status=TaskStatus.PENDING, output=None)
    await engine.stores.workflows.update(wf, status=WorkflowStatus.RUNNING, owner="elsewhere:1:dead", finished_at=None)
    log.write_text("done\n")
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: "▶ ui-test" in tree_text(app), pilot=pilot)
        await until(lambda: any("resume" in n.message.lower() for n in app._notifications), pilot=pilot)
        await pilot.press("R")

        async def completed() -> bool:
            return await status_of(engine, wf) is WorkflowStatus.COMPLETED

        await until(completed, pilot=pilot)
        await until(lambda: "✔ ui-test" in tree_text(app) and "✔ todo" in tree_text(app), pilot=pilot)
    assert log.read_text().split() == ["done", "todo"], "the completed task must not run again"


async def test_m_maximises_one_agent_pane(engine: Engine) -> None:
    tasks = [{"id": f"count{i}", "agent": "sh", "run": COUNTER} for i in range(3)]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(140, 44)) as pilot:
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: len(grid.visible_panes()) == 3, pilot=pilot)
        await pilot.press("m")
        await until(lambda: len(grid.visible_panes()) == 1 and grid.maximised is not None, pilot=pilot)
        await pilot.press("m")
        await until(lambda: len(grid.visible_panes()) == 3, pilot=pilot)
        assert app.started_workflow is not None
        await engine.cancel(app.started_workflow)


async def test_a_maximised_pane_says_how_many_it_hides_and_keeps_a_new_one_hidden(engine: Engine) -> None:
    tasks = [
        {"id": "count", "agent": "sh", "run": COUNTER},
        {"id": "gate", "agent": "sh", "run": "while [ ! -f go ]; do sleep 0.05; done"},
        {"id": "late", "agent": "sh", "run": COUNTER, "depends_on": ["gate"]},
    ]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(140, 44)) as pilot:
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: len(grid.visible_panes()) == 2, pilot=pilot)
        await pilot.press("m")
        await until(lambda: grid.maximised is not None and len(grid.visible_panes()) == 1, pilot=pilot)
        shown = grid.maximised
        assert shown is not None
        await until(lambda: shown.border_subtitle == "maximised · 1 hidden · m restores", pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        (engine.workdir_for(wf, "gate") / "go").touch()
        await until(lambda: (wf, "late") in grid.panes, pilot=pilot)
        assert grid.visible_panes() == [shown], "a pane that starts behind a maximised one stays hidden"
        await until(lambda: "hidden" in str(shown.border_subtitle) and grid.hidden_by_maximise() >= 1, pilot=pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Maximise agent pane" in titles and "Maximize" not in titles, titles
        await pilot.press("m")
        await until(lambda: grid.maximised is None and str(shown.border_subtitle) == "", pilot=pilot)
        await engine.cancel(wf)


async def test_tasks_are_listed_in_the_order_they_were_created(engine: Engine) -> None:
    # A task created, run and completed within one frame must not move below the tasks created after it.
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = tree_of(app)
        await until(lambda: tree.is_mounted, pilot=pilot)
        workflow = Workflow(name="ordered")
        tasks = {key: Task(workflow=workflow.id, key=key, agent="sh") for key in ("plan", "build", "report")}
        tree.receive(Change("workflow", "update", workflow.id, workflow, 1))  # commit order: the workflow first
        for task in tasks.values():
            tree.receive(Change("task", "update", task.id, task, 1))
        done = tasks["plan"].model_copy(update={"status": TaskStatus.COMPLETED})
        tree.receive(Change("task", "update", done.id, done, 2))
        tree.receive(Change("workflow", "update", workflow.id, workflow, 2))
        await until(lambda: "report" in tree_text(app), pilot=pilot)
        lines = tree_text(app).splitlines()
        order = [next(i for i, line in enumerate(lines) if key in line) for key in ("plan", "build", "report")]
        assert order == sorted(order), lines
        assert "✔ plan" in tree_text(app)


async def test_a_workflow_selected_before_its_row_arrives_gets_the_cursor_when_it_does(engine: Engine) -> None:
    # The bus's workflow.created can beat the database's change feed: the dashboard selects the new workflow
    # while the tree has no row for it yet. The cursor must land on it once the row is shown.
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = tree_of(app)
        await until(lambda: tree.is_mounted and isinstance(app.screen, MainScreen), pilot=pilot)
        older, newer = Workflow(name="older"), Workflow(name="newer")
        tree.receive(Change("workflow", "update", older.id, older, 1))
        await until(lambda: "older" in tree_text(app), pilot=pilot)
        # As the dashboard does (not the tree alone: once loaded, the dashboard puts the cursor on the newest
        # workflow shown if it has selected none, which may come after this on a busy machine).
        screen = app.screen
        assert isinstance(screen, MainScreen)
        screen.show_task(newer.id)  # not in the tree yet
        tree.receive(Change("workflow", "update", newer.id, newer, 2))

        def on_newer() -> bool:
            ref = tree.cursor_node.data if tree.cursor_node is not None else None
            return ref is not None and ref.workflow == newer.id

        def where() -> str:
            ref = tree.cursor_node.data if tree.cursor_node is not None else None
            return f"the cursor on newer; it is on {ref}, pending {tree._to_select}, line {tree.cursor_line}"

        await until(on_newer, where, pilot=pilot)


async def test_rows_written_children_first_in_one_transaction_show_nested_in_the_tree(engine: Engine) -> None:
    # The tree follows workflow, task and graph_node as one stream in commit order: a transaction that writes a
    # graph node before its task and workflow still shows all three, nested, and a later thread's node only after
    # the task moved to that thread.
    from db.models import GraphNode, task_record_key
    from db.stores._codec import rid, to_row

    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = tree_of(app)
        await until(lambda: tree.is_mounted and tree._loaded, pilot=pilot)
        workflow = Workflow(name="children-first", status=WorkflowStatus.RUNNING)
        task = Task(workflow=workflow.id, key="build", agent="g", thread="t1", status=TaskStatus.RUNNING)
        node = GraphNode(id=f"{workflow.id}/build/n1", workflow=workflow.id, task="build", thread="t1", node="sketch")
        await engine.db.query(
            "BEGIN; INSERT INTO graph_node $n RETURN NONE; INSERT INTO task $t RETURN NONE; "
            "INSERT INTO workflow $w RETURN NONE; COMMIT;",
            {
                "n": to_row(node, "graph_node", node.id),
                "t": to_row(task, "task", task_record_key(workflow.id, "build"), drop=()),
                "w": to_row(workflow, "workflow", workflow.id),
            },
        )
        await until(lambda: "sketch" in tree_text(app), pilot=pilot)
        lines = tree_text(app).splitlines()
        order = [
            next(i for i, line in enumerate(lines) if name in line) for name in ("children-first", "build", "sketch")
        ]
        assert order == sorted(order), lines

        later = GraphNode(id=f"{workflow.id}/build/n2", workflow=workflow.id, task="build", thread="t2", node="polish")
        task_id = rid("task", task_record_key(workflow.id, "build"))
        await engine.db.query("UPDATE $id SET thread = 't2'", {"id": task_id})
        await engine.db.query("INSERT INTO graph_node $n RETURN NONE", {"n": to_row(later, "graph_node", later.id)})
        await until(lambda: "polish" in tree_text(app) and "sketch" not in tree_text(app), pilot=pilot)


async def test_help_and_quit_stay_in_the_footer_at_80_columns(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: isinstance(app.screen, MainScreen) and bool(app.screen.query(FooterKey)), pilot=pilot)
        await pilot.pause()
        shown = {
            key.description
            for key in app.screen.query(FooterKey)
            if key.region.width > 0 and key.region.right <= app.size.width
        }
        assert {"Help", "Quit"} <= shown, f"the footer at 80 columns shows {sorted(shown)}"


async def test_a_failed_task_shows_its_error_on_its_row_and_the_workflow_counts_it(engine: Engine) -> None:
    tasks = [
        {"id": "ok", "agent": "sh", "run": "echo fine"},
        {"id": "broken", "agent": "sh", "run": "echo 'AssertionError: 2 != 3 [bold]' >&2; exit 3", "retries": 0},
        {"id": "after", "agent": "sh", "run": "true", "depends_on": ["broken"]},
    ]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(160, 40)) as pilot:
        # The workflow's row can arrive before its tasks' rows: wait for all of them.
        await until(lambda: "✘1" in tree_text(app) and "· after" in tree_text(app), pilot=pilot)
        rows = {line.split()[1]: line for line in tree_text(app).splitlines()[1:]}
        assert "exit code 3: AssertionError: 2 != 3 [bold]" in rows["broken"]  # the task's text, not markup
        assert "exit code" not in rows["ok"] and "exit code" not in rows["after"]
        assert "✘1" in tree_text(app).splitlines()[0]
        header = app.screen.query_one("#selection", Label)

        def header_state() -> str:  # said if it never comes (seen once in CI, not reproduced): what it showed
            main = app.screen
            selected = getattr(main, "selected_workflow", None)
            statuses = {k: t.status.value for k, t in tree_of(app).tasks.get(selected or "", {}).items()}
            return f"the header to count them; it showed {str(header.render())!r}, selected {selected}, {statuses}"

        await until(lambda: "1 failed · 1 skipped" in str(header.render()), header_state, pilot=pilot)
        row = tree_of(app).get_node_at_line(2)
        assert row is not None and isinstance(row.label, Text)
        assert "red" in str(row.label.get_style_at_offset(app.console, 2))  # the row takes its state's colour


async def test_tasks_arriving_already_failed_in_the_frame_of_their_workflow_are_counted(engine: Engine) -> None:
    """On a busy machine one frame can bring a workflow's row and its tasks' first rows, already finished: the
    workflow's row is drawn first, and must still count them."""
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = tree_of(app)
        await until(lambda: tree.is_mounted, pilot=pilot)
        workflow = Workflow(name="busy", status=WorkflowStatus.FAILED)
        ok = Task(workflow=workflow.id, key="ok", agent="sh", status=TaskStatus.COMPLETED)
        broken = Task(workflow=workflow.id, key="broken", agent="sh", status=TaskStatus.FAILED)
        tree.receive(Change("workflow", "update", workflow.id, workflow, 1))
        for task in (ok, broken):
            tree.receive(Change("task", "update", task.id, task, 1))
        await until(lambda: "broken" in tree_text(app), pilot=pilot)
        assert "1/2 ✘1" in tree_text(app).splitlines()[0]


async def test_a_failed_tasks_pane_stays_until_x_dismisses_it(engine: Engine) -> None:
    tasks = [
        {"id": "fine", "agent": "sh", "run": "echo fine"},
        {"id": "broken", "agent": "sh", "run": "echo 'it broke' >&2; exit 1"},
    ]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(160, 40)) as pilot:
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: "✘ ui-test" in tree_text(app), pilot=pilot)
        await until(lambda: [key[1] for key in grid.panes] == ["broken"], pilot=pilot)  # the finished one left
        assert grid.panes[(app.started_workflow or "", "broken")].state == "failed"
        await pilot.press("x")
        await until(lambda: not grid.panes, pilot=pilot)


async def test_a_finished_pane_shows_100_percent_not_its_last_progress_line(engine: Engine) -> None:
    run = "echo '::progress::0.3 started'; while [ ! -f go ]; do sleep 0.05; done; echo done"
    app = make_app(engine, start=spec([{"id": "work", "agent": "sh", "run": run}]))
    async with app.run_test(size=(120, 40)) as pilot:
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: any(p.header.progress == 0.3 for p in grid.panes.values()), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        (engine.workdir_for(wf, "work") / "go").touch()
        pane = grid.panes[(wf, "work")]
        await until(lambda: pane.state == "completed" and pane.header.progress == 1.0, pilot=pilot)
        assert "100%" in pane.header_text()


async def test_the_top_bar_and_the_tree_never_disagree_about_the_workflow_state(engine: Engine) -> None:
    """One truth on screen (issue 12 point 2): the top bar used to lag the tree by up to a second (after r it said
    completed while the tree said running). Sampled every frame through pause, resume and cancel."""
    app = make_app(engine, start=spec([{"id": "count", "agent": "sh", "run": COUNTER}]))
    async with app.run_test(size=(120, 36)) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        tree, header = tree_of(app), app.screen.query_one("#selection", Label)
        disagreements: list[str] = []

        def agree() -> bool:
            shown = tree.workflows.get(wf)
            if shown is not None and f" {shown.status.value}" not in str(header.render()):
                disagreements.append(f"tree {shown.status.value}, top bar {header.render()}")
            return True

        async def through(key: str, status: str) -> None:
            await pilot.press(key)
            if key == "c":
                await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
                await pilot.press("y")
            await until(lambda: agree() and tree.workflows[wf].status.value == status, pilot=pilot, pause_s=0.01)
            for _ in range(10):  # and the frames after it
                await pilot.pause(0.01)
                agree()

        main = app.screen
        assert isinstance(main, MainScreen)
        await until(lambda: agree() and wf in tree.workflows and main.selected_workflow == wf, pilot=pilot)
        await through("p", "paused")
        await through("p", "running")
        await through("c", "cancelled")
        assert disagreements == []
