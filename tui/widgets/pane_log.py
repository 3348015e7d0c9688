"""An agent pane's output log: Textual's line-oriented ``Log``, with stderr lines (and notes) styled.

Why ``Log`` rather than ``RichLog``: ``RichLog.write`` renders what it is given through Rich at once — every line,
also the ones that scroll past unseen — while ``Log`` keeps plain strings and renders only the rows on screen when
they are painted. Under a flood that is most of a frame's work (measured by ``bench/dashboard_bench.py``; see the
README). ``Log`` draws every line alike, so this subclass keeps one flag per line (stdout, stderr, note) beside
the log's own lines and styles the painted row in ``render_line``.

Lines are split here exactly as ``Log.write_lines`` would split them (``str.splitlines``), and an empty line is
written as one space (``Log`` drops empty strings), so the flags stay aligned with the log's lines one for one.
Scrollbars are painted only while you look back: following the output, a pane shows none (repainting a moving
scrollbar on every write was the largest part of a frame after the log itself); scrolled up, the vertical one
appears. Long lines still scroll sideways with the mouse or keys.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import Log

STDOUT, STDERR, NOTE = 0, 1, 2
_STYLES = {STDERR: Style(color="red"), NOTE: Style(dim=True, italic=True)}


class PaneLog(Log):
    """A bounded log of output lines, each stdout, stderr or a note; follows the end unless scrolled up."""

    DEFAULT_CSS = """
    PaneLog { height: 1fr; scrollbar-size: 0 0; }
    PaneLog.-browsing { scrollbar-size-vertical: 1; }
    """

    def __init__(self, max_lines: int, **kwargs: object) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, **kwargs)  # type: ignore[arg-type]
        self._kinds: deque[int] = deque(maxlen=max_lines)

    def write_kinds(self, lines: Iterable[tuple[str, int]]) -> None:
        """Append lines, each with its kind (``STDOUT``, ``STDERR``, ``NOTE``), in one write.

        The view follows the new lines if it was at the end (``Log``'s own rule: scrolled up, it stays put).
        """
        texts: list[str] = []
        for line, kind in lines:
            for part in line.splitlines() or [" "]:
                texts.append(part or " ")
                self._kinds.append(kind)
        if texts:
            self.write_lines(texts)

    def clear(self) -> PaneLog:
        self._kinds.clear()
        super().clear()
        return self

    @property
    def following(self) -> bool:
        """At the end: new lines scroll into view."""
        return self.scroll_offset.y >= self.max_scroll_y

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.set_class(not self.following, "-browsing")

    def kind_of(self, index: int) -> int:
        """The kind of the line at ``index`` among the lines kept."""
        return self._kinds[index] if 0 <= index < len(self._kinds) else STDOUT

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        style = _STYLES.get(self.kind_of(self.scroll_offset.y + y))
        if style is None:
            return strip
        # Over the log's own colours (``Strip.apply_style`` would put it under them).
        return Strip(Segment.apply_style(strip, post_style=style), strip.cell_length)
