"""The event log's rows: kept as events, turned into text only when a row is painted.

``RichLog.write`` renders every row it is given through Rich at once; at 2,000 events a second that was the largest
part of the dashboard's work while the Events tab was open (``bench/dashboard_bench.py``), though only the forty or
so rows on screen are ever seen. This scroll view keeps the events themselves (bounded) and draws a row when it is
painted, from a small cache of drawn rows (a row scrolled up a line is not drawn again); adding rows costs a deque
append and a width estimate. It follows the newest row unless the user scrolled up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from db.models import Event

Row = Event | Text  # an event, or a note of the log's own (dim text)


class EventRows(ScrollView, can_focus=True):
    """Rows of events drawn by ``draw`` (``Event`` → ``Text``) when painted; at most ``keep`` rows.

    Focused, ``↑`` ``↓`` move a cursor over the rows (``End`` back to following the newest) and ``Enter`` posts
    ``Chosen`` with the event under it."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("end", "cursor_end", "Newest", show=False),
        Binding("enter", "choose", "Event details"),
    ]

    class Chosen(Message):
        """Enter on an event's row."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    DEFAULT_CSS = """
    EventRows {
        background: $surface;
        color: $foreground;
        overflow-y: scroll;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    def __init__(self, draw: Callable[[Event], Text], width_of: Callable[[Event], int], keep: int, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._draw = draw
        self._width_of = width_of
        self.rows: deque[Row] = deque(maxlen=keep)
        self._widest = 0
        self._drawn: LRUCache[tuple[str, int, str, int, int, Style], Strip] = LRUCache(512)
        self._style = Style()
        self.cursor: int | None = None  # the row under the cursor (None: following the newest, no cursor)

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def row_text(self, index: int) -> str:
        """A row's text as it is drawn (for tests)."""
        row = self.rows[index]
        return (row if isinstance(row, Text) else self._draw(row)).plain

    def write(self, rows: Iterable[Row]) -> None:
        """Add rows at the bottom; the view follows them if it was at the end and no cursor is set."""
        following = self.scroll_offset.y >= self.max_scroll_y and self.cursor is None
        added = 0
        for row in rows:
            if len(self.rows) == self.rows.maxlen and self.cursor is not None:
                self.cursor = max(0, self.cursor - 1)  # the oldest row goes: the cursor stays on its event
            self.rows.append(row)
            width = row.cell_len if isinstance(row, Text) else self._width_of(row)
            self._widest = max(self._widest, width)
            added += 1
        if not added:
            return
        self._resize(Size(self._widest, len(self.rows)))
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def action_cursor(self, step: int) -> None:
        if not self.rows:
            return
        at = len(self.rows) - 1 if self.cursor is None else self.cursor
        self.cursor = min(len(self.rows) - 1, max(0, at + (step if self.cursor is not None else 0)))
        self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, immediate=True)
        self.refresh()

    def action_cursor_end(self) -> None:
        self.cursor = None
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def action_choose(self) -> None:
        if self.cursor is None:
            self.action_cursor(0)  # the first Enter puts the cursor on the newest row
            return
        row = self.rows[self.cursor] if self.cursor < len(self.rows) else None
        if isinstance(row, Event):
            self.post_message(self.Chosen(row))

    def clear(self) -> None:
        self.cursor = None
        self.rows.clear()
        self._widest = 0
        self._resize(Size(0, 0))
        self.refresh()

    def _resize(self, size: Size) -> None:
        """A new scrollable size without a layout of the screen (``virtual_size`` is a layout reactive, and each
        layout repainted every widget: the longest frames while the log filled). The view's own size is fixed by
        its container, so only its scroll bounds and scrollbars change."""
        if size != self.virtual_size:
            self.set_reactive(ScrollView.virtual_size, size)
            self._scroll_update(size)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style = self.rich_style  # once a paint: it walks the widget's ancestors
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        style = self._style
        index = scroll_y + y
        if index >= len(self.rows):
            return Strip.blank(width, style)
        row = self.rows[index]
        if index == self.cursor:  # drawn highlighted, never cached
            text = row if isinstance(row, Text) else self._draw(row)
            cursor_style = style + Style(reverse=True)
            return Strip(self._segments(text), text.cell_len).crop_extend(scroll_x, scroll_x + width, cursor_style)
        if isinstance(row, Text):
            return Strip(self._segments(row), row.cell_len).crop_extend(scroll_x, scroll_x + width, style)
        key = (row.workflow, row.seq, row.type, scroll_x, width, style)
        strip = self._drawn.get(key)
        if strip is None:
            text = self._draw(row)
            drawn = Strip(self._segments(text), text.cell_len)
            strip = drawn.crop_extend(scroll_x, scroll_x + width, style).apply_style(style)
            self._drawn[key] = strip
        return strip

    def _segments(self, text: Text) -> list[Segment]:
        """One line of ``text`` as segments. A row is pieces appended one after another (spans that do not
        overlap), so each span is one segment: ~5x cheaper than ``Text.render``, which lays the text out as a
        paragraph first — with a whole screen of new rows each frame under a flood, that was most of a frame."""
        console = self.app.console
        plain = text.plain
        base = console.get_style(text.style, default=None) or Style()
        out: list[Segment] = []
        at = 0
        for span in sorted(text.spans):
            if span.start < at or "\n" in plain:  # overlapping spans or several lines: Rich's own way
                text = text.copy()
                text.no_wrap = True
                return list(text.render(console))
            if span.start > at:
                out.append(Segment(plain[at : span.start], base))
            look = span.style if isinstance(span.style, Style) else console.get_style(span.style, default=None)
            out.append(Segment(plain[span.start : span.end], base + look if look else base))
            at = span.end
        if at < len(plain):
            out.append(Segment(plain[at:], base))
        return out
