"""An agent pane's header at every width: the title (state, agent, task) is what a narrow pane keeps, the bar and
the cost give way first (issue 12: at 80x24 the fixed-width bar squeezed the title to "✔ c…")."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult

from tui.widgets.pane_header import PaneHeader

TITLE = "▶ builder · measure · 12s"


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
    assert line.startswith("▶ builder") and "…" in line and line.endswith("52%")
    assert "tok" not in line and "━" not in line
