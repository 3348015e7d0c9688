"""One metrics chart (plotext, through textual-plotext): lines over the last minute, or bars per agent.

Every chart's title carries its unit and the current value (``running agents (tasks) · now 3``, or for bars
``slowest p95 7.6``); counts are drawn on an integer axis from 0 (no ``0.5 tasks``), other values on a
non-negative one, and a chart of zeros (nothing failed yet) spans 0 to 1 instead of -1 to 1.
"""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot


def number(value: float) -> str:
    """``3``, ``0.25``, ``12.5``: as short as it reads."""
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


class Chart(PlotextPlot):
    """``update_series`` (lines) or ``update_bars`` (groups of bars) replace its data and redraw it.

    The title is the widget's border title, not plotext's: plotext drew one chart's title over its neighbour's."""

    DEFAULT_CSS = """
    Chart { border-top: solid $panel-lighten-2; border-title-align: center; border-title-color: $text; }
    """

    def __init__(self, title: str, unit: str, *, counts: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chart_title = title
        self.unit = unit
        self.counts = counts  # whole numbers: an integer axis
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.bars: tuple[list[str], dict[str, list[float]]] | None = None
        self.now = ""  # the current value(s) shown in the title: "now 3", "slowest p95 7.6"

    def on_mount(self) -> None:
        self._frame([])

    def title_text(self) -> str:
        return f"{self.chart_title} ({self.unit})" + (f" · {self.now}" if self.now else "")

    def _frame(self, values: list[float]) -> None:
        """Title and y axis for ``values``: from 0, integer ticks for counts, 0 to 1 when there is nothing yet."""
        plt = self.plt
        self.border_title = self.title_text()
        top = max(values, default=0.0)
        if self.counts:
            ceiling = max(1, math.ceil(top))
            step = max(1, math.ceil(ceiling / 4))
            plt.ylim(0, ceiling)
            plt.yticks(list(range(0, ceiling + 1, step)))
        else:
            plt.ylim(0, top * 1.1 if top > 0 else 1.0)

    def update_series(self, series: dict[str, tuple[list[float], list[float]]]) -> None:
        if series == self.series:
            return
        self.series = series
        plt = self.plt
        plt.clear_data()
        lasts = [(name, ys[-1]) for name, (_, ys) in series.items() if ys]
        if len(lasts) == 1:
            self.now = f"now {number(lasts[0][1])}"
        elif lasts:
            self.now = "now " + " · ".join(f"{name} {number(value)}" for name, value in lasts)
        else:
            self.now = ""
        for name, (xs, ys) in series.items():
            if xs:
                plt.plot(xs, ys, label=name, marker="braille")
        self._frame([y for _, ys in series.values() for y in ys])
        self.refresh()

    def update_bars(self, labels: list[str], groups: dict[str, list[float]], now: str = "") -> None:
        """Bars per label, one per group (``p50``, ``p95``) side by side."""
        if self.bars == (labels, groups):
            return
        self.bars = (labels, groups)
        plt = self.plt
        plt.clear_data()
        self.now = now
        if labels:
            # plotext takes ``labels`` (its stub says ``label``, which the code passes on to nothing)
            plt.multiple_bar(labels, list(groups.values()), labels=list(groups))  # type: ignore[call-arg]
        self._frame([v for values in groups.values() for v in values])
        self.refresh()
