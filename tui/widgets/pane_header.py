"""An agent pane's one-line header: title on the left; tokens and cost, and a progress bar, on the right.

One fixed-size widget (one row, the pane's width) that draws the whole line in ``render()``. Changing what it
shows only repaints it (``refresh()``); ``Label.update`` would ask for a layout of the screen each time, since a
label's size may follow its text, and a pane's title changes every second (elapsed time). When the row is short
the bar shrinks, then shows only its percent, then the cost goes: the title (task, agent, state: the task
first, as what a narrow pane must keep) gives way last.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

BAR_WIDTH = 16


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """``━━━━━━╸━━━━━━━━━  40%``: the done part bright, the rest dim, half cells for a finer step."""
    fraction = min(1.0, max(0.0, fraction))
    halves = round(fraction * width * 2)
    full, half = divmod(halves, 2)
    colour = "green3" if fraction >= 1.0 else "orange1"
    bar = Text("━" * full, style=colour)
    if half:
        bar.append("╸", style=colour)
    rest = width - full - half
    if rest:
        bar.append("━" * rest, style="grey23")
    bar.append(f" {fraction * 100:>3.0f}%", style="bold")
    return bar


class PaneHeader(Widget):
    """The header row of an ``AgentPane``; ``show`` repaints it only when something changed."""

    DEFAULT_CSS = """
    PaneHeader { height: 1; width: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.title = Text()
        self.usage = ""
        self.progress: float | None = None
        self.repaints = 0  # how many times it changed (the dashboard bench and tests read it)

    def show(self, title: Text, usage: str = "", progress: float | None = None) -> None:
        """Show these; a repaint (never a layout) only when one of them differs from what is shown."""
        if progress is not None:
            progress = round(min(1.0, max(0.0, progress)), 3)
        if title == self.title and usage == self.usage and progress == self.progress:
            return
        self.title, self.usage, self.progress = title, usage, progress
        self.repaints += 1
        self.refresh()

    def text(self) -> str:
        """The line as plain text, whatever the width (for tests and logs)."""
        parts = [self.title.plain, self.usage]
        if self.progress is not None:
            parts.append(progress_bar(self.progress).plain)
        return " · ".join(part for part in parts if part)

    def _right(self, usage: bool, bar_width: int) -> Text:
        """Tokens and cost (if ``usage``), and the progress: a bar ``bar_width`` cells wide, or just the percent."""
        right = Text()
        if usage and self.usage:
            right.append(f" {self.usage} ", style="dim")
        if self.progress is not None:
            right.append(" ")
            if bar_width:
                right.append_text(progress_bar(self.progress, width=bar_width))
            else:
                right.append(f"{self.progress * 100:.0f}%", style="bold")
        return right

    def render(self) -> Text:
        width = self.size.width
        # The title wins: the right side gives way step by step (a shorter bar, no bar, no cost) until the title
        # fits; when even the barest right side leaves it too little room, the title is cut.
        sides = [(True, max(4, min(BAR_WIDTH, width // 4))), (True, 4), (True, 0), (False, 0)]
        for usage, bar_width in sides:
            right = self._right(usage, bar_width)
            if self.title.cell_len + right.cell_len <= width:
                break
        title = self.title.copy()
        title.truncate(max(0, width - right.cell_len), overflow="ellipsis")
        title.pad_right(max(0, width - right.cell_len - title.cell_len))
        title.append_text(right)
        title.no_wrap = True
        return title
