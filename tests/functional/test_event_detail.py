"""Enter on a row of the event log shows that event in full (issue 12 point 8): Pilot over a real engine (mem://)
and a real shell task whose error is longer than a row shows."""

from __future__ import annotations

from textual.geometry import Region
from textual.widgets import Static

from engine.engine import Engine
from tests.functional.test_dashboard import spec
from tests.support.polling import until
from tui.app import make_app
from tui.screens.event_detail import EventDetailScreen
from tui.screens.main import MainScreen
from tui.widgets.event_log import EventLog
from tui.widgets.event_rows import EventRows

RUN = "for i in 1 2 3; do echo line $i; done; echo 'a long reason' >&2; exit 7"


async def test_enter_on_an_event_row_shows_all_of_its_data(engine: Engine) -> None:
    app = make_app(engine, start=spec([{"id": "boom", "agent": "sh", "run": RUN}]))
    async with app.run_test(size=(120, 36)) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        await pilot.press("2")
        log = app.screen.query_one(EventLog)
        rows = app.screen.query_one(EventRows)
        await until(lambda: any(e.type == "workflow.failed" for e in log.shown()), pilot=pilot)
        await until(lambda: rows.row_count == len(log.shown()), pilot=pilot)
        rows.focus()
        await pilot.press("enter")  # the cursor comes onto the newest row
        assert rows.cursor == rows.row_count - 1
        failed = next(i for i, e in enumerate(log.shown()) if e.type == "task.failed")
        await pilot.press(*["up"] * (rows.cursor - failed))
        assert rows.cursor == failed
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, EventDetailScreen), pilot=pilot)
        assert isinstance(app.screen, EventDetailScreen) and app.screen.event.type == "task.failed"
        await pilot.pause()
        shown = app.screen.query_one("#event-detail-json", Static)
        text = "\n".join(s.text for s in shown.render_lines(Region(0, 0, *shown.size)))
        assert '"type": "task.failed"' in text and '"task": "boom"' in text and "exit code 7" in text, text
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
