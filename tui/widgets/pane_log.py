"""An agent pane's output log: Textual's line-oriented ``Log``, with stderr lines (and notes) styled.

Why ``Log`` rather than ``RichLog``: ``RichLog.write`` renders what it is given through Rich at once — every line,
also the ones that scroll past unseen — while ``Log`` keeps plain strings and renders only the rows on screen when
they are painted. Under a flood that is most of a frame's work (measured by ``bench/dashboard_bench.py``; see the
README). ``Log`` draws every line alike, so this subclass keeps one flag per line (stdout, stderr, note) beside
the log's own lines and styles the painted row in ``render_line``.

Lines are split here exactly as ``Log.write_lines`` would split them (``str.splitlines``), and an empty line is
written as one space (``Log`` drops empty strings), so the flags stay aligned with the log's lines one for one.
Rows are drawn from a cache of rendered lines, keyed by each line's number since the pane opened (so pruning the
oldest lines keeps it valid): Textual 8.2.8's ``Log`` fills its own row cache only while text is selected, so
every visible row went through Rich again on every frame of a flood.

Scrollbars are painted only while you look back: following the output, a pane shows none (repainting a moving
scrollbar on every write was the largest part of a frame after the log itself); scrolled up, the vertical one
appears. Long lines still scroll sideways with the mouse or keys.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Region, Size
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
        self._rows: LRUCache[int, Strip] = LRUCache(512)  # drawn rows by line number since the pane opened
        self._frame_style: Style | None = None  # the pane's style while a frame is drawn
        self._dropped = 0  # lines pruned from the front so far: line number = _dropped + index in _lines

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
            self._append(texts)

    def _append(self, texts: list[str]) -> None:
        """``Log.write_lines`` without its two costs under a flood, measured by ``bench/dashboard_bench.py``.

        ``Log`` starts a thread worker on every write to measure the new lines' width (a Worker object, a thread
        hop, state-change messages and a call back onto the loop: 160 a second for 8 busy panes), and sets
        ``virtual_size``, a layout reactive: each write that grew the log laid out the whole screen, and those
        frames repainted every widget (a frame of 40-100 ms instead of ~12). Here the width is measured inline
        (lines are short; ``cell_len`` is cached), and a new virtual size only updates this pane's scroll bounds
        and scrollbar: the pane's own size is fixed by the grid, so nothing else on screen moves. Relies on
        ``Log``'s ``_lines``, ``_width``, ``_process_line`` and ``_prune_max_lines`` (Textual is pinned in ``uv.lock``;
        ``tests/functional/test_pane_log.py`` holds the behaviour).
        """
        at_end = self.is_vertical_scroll_end
        start = len(self._lines)
        self._lines.extend(texts)
        if self.max_lines is not None and len(self._lines) > self.max_lines:
            self._dropped += len(self._lines) - self.max_lines
            self._prune_max_lines()
        widest = max(cell_len(self._process_line(text)) for text in texts)
        self._width = max(self._width, widest)
        size = Size(self._width, len(self._lines))
        if size != self.virtual_size:
            self.set_reactive(Log.virtual_size, size)
            self._scroll_update(size)
        self.refresh_lines(start, len(texts))
        if self.auto_scroll and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.refresh()

    def clear(self) -> PaneLog:
        self._kinds.clear()
        self._dropped += len(self._lines)
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

    def render_lines(self, crop: Region) -> list[Strip]:
        # ``rich_style`` walks every ancestor's styles on each call; a frame asks for it once, not once a row.
        self._frame_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None

    def render_line(self, y: int) -> Strip:
        if self.text_selection is not None:  # selecting text: Log's own path draws the highlight
            return self._styled(super().render_line(y), self.scroll_offset.y + y)
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        rich_style = self._frame_style or self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, rich_style)
        key = self._dropped + index
        strip = self._rows.get(key)
        if strip is None:
            text = self._process_line(self._lines[index])
            style = _STYLES.get(self.kind_of(index))
            strip = Strip([Segment(text, rich_style + style if style else rich_style)], cell_len(text))
            self._rows[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, rich_style).apply_offsets(scroll_x, index)

    def _styled(self, strip: Strip, index: int) -> Strip:
        style = _STYLES.get(self.kind_of(index))
        if style is None:
            return strip
        # Over the log's own colours (``Strip.apply_style`` would put it under them).
        return Strip(Segment.apply_style(strip, post_style=style), strip.cell_length)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._rows.clear()  # the pane's colours changed (theme, focus): rows are drawn again
