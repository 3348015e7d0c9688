"""The metrics charts as drawn (real plotext through textual-plotext in a real app): units and current values in
the title, integer axes from 0 for counts, 0 to 1 when all zero, bars with p50/p95 per agent."""

from __future__ import annotations

import re

from textual.app import App, ComposeResult

from tests.support.polling import until
from tui.widgets.chart import Chart


class Charts(App[None]):
    def compose(self) -> ComposeResult:
        yield Chart("running agents", "tasks", counts=True, id="counts")
        yield Chart("task duration by agent", "s", id="bars")


def drawn(chart: Chart) -> str:
    return str(chart.render())


def y_labels(text: str) -> list[str]:
    """The y axis's tick labels: what stands before ``┤`` on each line."""
    return [m.group(1) for line in text.splitlines() if (m := re.match(r"\s*([-\d.]+)┤", line))]


async def test_counts_have_integer_ticks_from_zero_and_the_title_says_now() -> None:
    app = Charts()
    async with app.run_test(size=(80, 40)) as pilot:
        counts = app.query_one("#counts", Chart)
        # Nothing happened yet (a minute of zeros): the axis runs 0 to 1, not -1 to 1.
        counts.update_series({"failed": ([-1.0, 0.0], [0.0, 0.0])})
        await until(lambda: y_labels(drawn(counts)), pilot=pilot)
        assert y_labels(drawn(counts)) == ["1", "0"], y_labels(drawn(counts))
        counts.update_series({"running": ([-3.0, -2.0, -1.0, 0.0], [0.0, 2.0, 3.0, 1.0])})
        await pilot.pause()
        labels = y_labels(drawn(counts))
        assert labels and all(re.fullmatch(r"\d+", label) for label in labels), labels
        assert labels[0] == "3" and labels[-1] == "0", labels
        assert counts.border_title == "running agents (tasks) · now 1"


async def test_durations_are_bars_per_agent_with_p50_and_p95() -> None:
    app = Charts()
    async with app.run_test(size=(80, 40)) as pilot:
        bars = app.query_one("#bars", Chart)
        bars.update_bars(["builder", "coder"], {"p50": [1.0, 4.0], "p95": [2.0, 7.5]}, "slowest p95 7.5")
        await pilot.pause()
        text = drawn(bars)
        assert "builder" in text and "coder" in text and "p50" in text and "p95" in text, text
        assert bars.border_title == "task duration by agent (s) · slowest p95 7.5"
        assert "-" not in "".join(y_labels(text)), "durations are never negative"
