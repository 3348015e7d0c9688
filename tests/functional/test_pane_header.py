"""An agent pane's header at every width: the title (state, task, agent) is what a narrow pane keeps, the bar and
the cost give way first (issue 12: at 80x24 the fixed-width bar squeezed the title to "✔ c…")."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult

from engine.engine import Engine
from tests.functional.test_dashboard import spec
from tests.support.polling import until
from tui.app import make_app
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.pane_header import PaneHeader

TITLE = "▶ measure · builder · 12s"
WAIT = "echo started; while [ ! -f go ]; do sleep 0.05; done"


class HeaderApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PaneHeader()


async def line_at(width: int, **shown: Any) -> str:
    app = HeaderApp()
    async with app.run_test(size=(width, 3)) as pilot:
        header = app.query_one(PaneHeader)
        header.show(Text(TITLE), **shown)
        await pilot.pause()
        assert header.size.width == width
        return header.render().plain


@pytest.mark.parametrize("width", [30, 34, 40])
async def test_a_narrow_pane_keeps_its_whole_title(width: int) -> None:
    line = await line_at(width, usage="1.2k tok $0.004", progress=0.52)
    assert line.startswith(TITLE), line
    assert "52%" in line  # the percent stays as long as it fits beside the title
    assert len(line) == width


async def test_a_wide_pane_shows_title_cost_and_bar() -> None:
    line = await line_at(100, usage="1.2k tok $0.004", progress=0.52)
    assert line.startswith(TITLE) and "1.2k tok $0.004" in line and "━" in line and line.endswith(" 52%")


async def test_too_narrow_for_the_title_cuts_the_title_last() -> None:
    line = await line_at(18, usage="1.2k tok $0.004", progress=0.52)
    assert line.startswith("▶ measure") and "…" in line and line.endswith("52%")
    assert "tok" not in line and "━" not in line


async def test_at_80_columns_five_running_panes_each_show_their_task_name(engine: Engine) -> None:
    """The 80x24 check of issue 12: with five tasks running, the grid uses fewer, wider columns (three columns of
    16 cells cut every title to "✔ coder …"), so each pane's header names its task."""
    tasks = [{"id": f"task_{n}", "agent": "sh", "run": WAIT} for n in range(5)]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.started_workflow is not None, pilot=pilot)
        grid = app.screen.query_one(AgentGrid)
        await until(lambda: len(grid.visible_panes()) == 5, pilot=pilot)
        await until(lambda: all(p.header.size.width for p in grid.panes.values()), pilot=pilot)
        assert grid.styles.grid_size_columns == 2

        def titles() -> dict[str, str]:
            return {task: pane.header.render().plain for (_, task), pane in grid.panes.items()}

        await until(lambda: all(task in title for task, title in titles().items()), pilot=pilot)
        workflow = app.started_workflow
        assert workflow is not None
        for n in range(5):
            (engine.workdir_root / workflow / f"task_{n}" / "go").touch()
        await until(lambda: not engine.is_running(workflow), pilot=pilot)
