"""Output in the dashboard comes in chunks: panes write once a frame, headers repaint without layout, the event log
shows one row per chunk.

The events go through the real engine's recorder, bus and the dashboard's feed, as a task's output does; a shell
task that sleeps keeps its pane open while the test emits.
"""

from __future__ import annotations

from textual import messages
from textual.message import Message
from textual.widget import Widget

from db.models import Event
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.widgets.agent_grid import LINGER_S, AgentGrid
from tui.widgets.agent_pane import MAX_LINES, AgentPane
from tui.widgets.event_log import EventLog
from tui.widgets.event_rows import EventRows
from tui.widgets.pane_header import PaneHeader
from tui.widgets.pane_log import STDERR, STDOUT, PaneLog


def spec(run: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {"name": "output-ui", "agents": {"sh": {"kind": "shell"}}, "tasks": [{"id": "hold", "agent": "sh", "run": run}]}
    )


def the_pane(app: AgentDeckApp) -> AgentPane | None:
    panes = list(app.screen.query_one(AgentGrid).panes.values())
    return panes[0] if panes else None


def emit_output(engine: Engine, workflow: str, lines: list[str], stream: str = "stdout") -> None:
    engine.recorder.emit(workflow, "task.output", task="hold", agent="sh", data={"stream": stream, "lines": lines})


async def test_many_output_events_reach_a_pane_in_one_write_with_stderr_in_red(engine: Engine) -> None:
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        pane, workflow = the_pane(app), app.started_workflow
        assert pane is not None and workflow is not None
        await until(lambda: pane.is_mounted, pilot=pilot)
        writes = pane.writes
        # 400 events in one go (as a burst of small chunks arrives): they land in one frame, written at once.
        for n in range(400):
            stream = "stderr" if n % 4 == 3 else "stdout"
            emit_output(engine, workflow, [f"line {n}"], stream)
        await until(lambda: len(pane.log_view.lines) >= 400, pilot=pilot)
        assert pane.writes - writes <= 3, f"{pane.writes - writes} writes for 400 events: one a frame expected"
        log = pane.log_view
        shown = list(log.lines)[-400:]
        assert shown[0] == "line 0" and shown[-1] == "line 399"
        first = len(log.lines) - 400
        assert [log.kind_of(first + n) for n in range(4)] == [STDOUT, STDOUT, STDOUT, STDERR]
        await engine.cancel(workflow)


async def test_a_chunk_of_lines_with_blank_and_multiline_entries_keeps_every_line(engine: Engine) -> None:
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        pane, workflow = the_pane(app), app.started_workflow
        assert pane is not None and workflow is not None
        emit_output(engine, workflow, ["a", "", "b"], "stderr")
        engine.recorder.emit(workflow, "task.output", task="hold", agent="sh", data={"stream": "stdout", "line": "old"})
        await until(lambda: "old" in pane.log_view.lines, pilot=pilot)
        lines = list(pane.log_view.lines)
        assert lines[-4:] == ["a", " ", "b", "old"], "a blank line is kept (as a space), an old one-line event read"
        assert pane.log_view.kind_of(len(lines) - 2) == STDERR and pane.log_view.kind_of(len(lines) - 1) == STDOUT
        assert pane.lines_seen == 4
        await engine.cancel(workflow)


async def test_title_and_progress_change_without_asking_for_a_layout(engine: Engine) -> None:
    posted: list[Message] = []
    app = make_app(engine, start=spec("echo '::progress::0.5 half way'; sleep 30"))
    async with app.run_test(size=(120, 40), message_hook=posted.append) as pilot:
        await until(lambda: the_pane(app) is not None, pilot=pilot)
        pane = the_pane(app)
        assert pane is not None
        await until(lambda: "50%" in pane.header_text(), pilot=pilot)
        # The header can be given its text before it is mounted and laid out (a busy machine shows it late): from
        # when it has its size on screen, only updates come (the title, as time passes).
        await until(lambda: pane.header.is_mounted and pane.header.size.width > 0, pilot=pilot)
        await pilot.pause()
        mounted = len(posted)
        repaints = pane.header.repaints
        await until(lambda: pane.header.repaints >= repaints + 2, pilot=pilot)  # the elapsed time ticks, twice
        assert "hold · sh · running" in pane.header_text()

        def in_header(widget: Widget) -> bool:
            return any(isinstance(node, PaneHeader) for node in widget.ancestors_with_self)

        layouts = [m for m in posted[mounted:] if isinstance(m, messages.Layout) and in_header(m.widget)]
        assert not layouts, f"the pane header asked for a layout: {[posted.index(m) - mounted for m in layouts]}"
        assert app.started_workflow is not None
        await engine.cancel(app.started_workflow)


async def test_a_flooded_pane_paints_its_newest_lines_and_never_lays_out_the_screen(engine: Engine) -> None:
    posted: list[Message] = []
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(120, 40), message_hook=posted.append) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        pane, workflow = the_pane(app), app.started_workflow
        assert pane is not None and workflow is not None
        await until(lambda: pane.is_mounted, pilot=pilot)
        mounted = len(posted)
        log = pane.log_view
        total = MAX_LINES + 500  # past the pane's bound: the oldest lines are dropped as new ones arrive
        for start in range(0, total, 250):
            for n in range(start, start + 250):
                emit_output(engine, workflow, [f"line {n}"], "stderr" if n % 3 == 0 else "stdout")

            def arrived(last: str = f"line {start + 249}") -> bool:
                return last in log.lines[-3:]

            await until(arrived, pilot=pilot)
            await pilot.pause()  # a frame between bursts: the rows drawn so far are cached under old positions
        emit_output(engine, workflow, ["w" * 300])  # wider than the pane: it can scroll sideways that far
        await until(lambda: log.lines[-1] == "w" * 300, pilot=pilot)
        await pilot.pause()
        assert len(log.lines) == MAX_LINES and log.lines[0] == f"line {total + 1 - MAX_LINES}"
        assert log.virtual_size == (300, MAX_LINES) and log.max_scroll_x > 0
        assert log.following and log.scroll_offset.y == log.max_scroll_y
        bottom = log.size.height - 1
        painted = [log.render_line(y) for y in range(bottom - 3, bottom + 1)]
        assert [strip.text.rstrip() for strip in painted[:3]] == [f"line {total - n}" for n in (3, 2, 1)]
        assert painted[3].text == "w" * log.size.width
        reds = [any(s.style and s.style.color and s.style.color.name == "red" for s in strip) for strip in painted[:3]]
        assert reds == [(total - 3 + n) % 3 == 0 for n in range(3)], "stderr rows red, stdout rows not"
        layouts = [m for m in posted[mounted:] if isinstance(m, messages.Layout) and isinstance(m.widget, PaneLog)]
        assert not layouts, f"{len(layouts)} layouts of the screen asked by the pane's log while it filled"
        log.scroll_to(y=0, animate=False, immediate=True)  # back to the oldest kept line
        await pilot.pause()
        assert log.render_line(0).text.rstrip() == f"line {total + 1 - MAX_LINES}"
        await engine.cancel(workflow)


async def test_the_event_log_shows_a_chunk_as_one_row_and_filters_on_any_of_its_lines(engine: Engine) -> None:
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(140, 40)) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        workflow = app.started_workflow
        assert workflow is not None
        emit_output(engine, workflow, ["compiling", "linking", "needle in the third line"])
        await pilot.press("2")
        rows = app.screen.query_one("#event-lines", EventRows)
        log = app.screen.query_one(EventLog)

        def texts() -> list[str]:
            return [rows.row_text(index) for index in range(rows.row_count)]

        await until(lambda: any("compiling" in row for row in texts()), pilot=pilot)
        row = next(row for row in texts() if "compiling" in row)
        assert "(+2 lines)" in row and "linking" not in row
        await pilot.press("slash", *"needle in the third")
        await until(lambda: log.needle == "needle in the third", pilot=pilot)
        await until(lambda: rows.row_count == 1, pilot=pilot)
        assert [e.type for e in log.shown()] == ["task.output"]
        assert "compiling" in texts()[0]
        # What is painted is the same row (drawn when painted, not when added).
        await pilot.pause()
        assert "compiling" in rows.render_line(0).text
        await engine.cancel(workflow)


async def test_scrolling_up_stops_following_and_shows_the_scrollbar_until_back_at_the_end(engine: Engine) -> None:
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        pane, workflow = the_pane(app), app.started_workflow
        assert pane is not None and workflow is not None
        log = pane.log_view
        emit_output(engine, workflow, [f"first {n}" for n in range(200)])
        await until(lambda: len(log.lines) == 200 and log.scroll_offset.y > 0, pilot=pilot)
        assert log.following and not log.has_class("-browsing"), "following the end: no scrollbar painted"
        log.scroll_to(y=10, animate=False, immediate=True)
        await pilot.pause()
        assert not log.following and log.has_class("-browsing")
        emit_output(engine, workflow, [f"second {n}" for n in range(50)])
        await until(lambda: len(log.lines) == 250, pilot=pilot)
        assert log.scroll_offset.y == 10, "new output did not pull a reader back down"
        log.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        emit_output(engine, workflow, ["third"])
        await until(lambda: len(log.lines) == 251, pilot=pilot)
        await until(lambda: log.following and log.scroll_offset.y == log.max_scroll_y, pilot=pilot)
        assert not log.has_class("-browsing")
        await engine.cancel(workflow)


async def test_a_task_started_again_while_its_old_pane_is_being_removed_gets_a_new_pane(engine: Engine) -> None:
    app = make_app(engine, start=spec("sleep 30"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: the_pane(app) is not None and app.started_workflow is not None, pilot=pilot)
        grid, workflow = app.screen.query_one(AgentGrid), app.started_workflow
        assert workflow is not None
        old = the_pane(app)

        def event(kind: str, seq: int) -> Event:
            return Event(seq=seq, type=kind, workflow=workflow, task="hold", agent="sh", data={"attempt": 2})

        grid.consume([event("task.completed", 10_000)])
        grid._ended[(workflow, "hold")] -= LINGER_S + 1  # its linger is over: this frame removes it
        grid.render_frame()
        grid.consume([event("task.started", 10_001)])  # a retry, in the same frame as the removal
        await pilot.pause()
        new = the_pane(app)
        assert new is not None and new is not old and new.attempt == 2
        await until(lambda: old not in grid.children, pilot=pilot)
        await engine.cancel(workflow)
