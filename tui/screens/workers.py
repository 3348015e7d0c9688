"""The workers there are (``W`` on the main screen, or the command palette): what ``agentdeck workers`` prints, kept
up to date while open.

Read from the roster each ``agentdeck worker`` keeps in Redis (``engine.workers.roster``), every ``RECHECK_S``
seconds: up or lost, running of slots, when last heard, up for, commands taken, the tasks each runs now. Without
Redis there are no workers to show, and the screen says how to get some; Redis unreachable is said in the screen,
and the list is read again at the next tick.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

from tui.roster_rows import HEADER, roster_row

RECHECK_S = 2.0
NO_REDIS = "no Redis: workers take commands from Redis. Start the dashboard with --redis URL (or AGENTDECK_REDIS)"
NONE_YET = "no workers: start one with `agentdeck worker --redis URL` on any machine that reaches this Redis"


class WorkersScreen(ModalScreen[None]):
    """The roster of workers in the Redis at ``redis_url`` (None: this dashboard has no Redis)."""

    BINDINGS = [Binding("escape,q,W", "dismiss", "Close")]

    def __init__(self, redis_url: str | None) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.rows: list[list[str]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="workers-box") as box:
            box.border_title = "⚙ workers"
            box.border_subtitle = "read every 2 s · Esc closes"
            yield DataTable(id="workers-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="workers-note")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in HEADER:
            table.add_column(name.lower(), key=name)
        table.focus()
        if self.redis_url is None:
            self._note(NO_REDIS)
            return
        self.reload()
        self.set_interval(RECHECK_S, self.reload)

    def _note(self, text: str, style: str = "dim") -> None:
        note = self.query_one("#workers-note", Label)
        note.update(Text(text, style=style))
        note.display = bool(text)

    @work(exclusive=True, group="workers-roster", exit_on_error=False)
    async def reload(self) -> None:
        from engine.bus import BadRedisUrl, BusUnavailable
        from engine.workers.roster import read_roster

        assert self.redis_url is not None
        try:
            found = await read_roster(self.redis_url)
        except (BadRedisUrl, BusUnavailable) as exc:
            self._note(f"{exc}", style="red")
            return
        now = datetime.now(UTC)
        rows = [roster_row(info, now) for info in found]
        self._note("" if rows else NONE_YET)
        if rows == self.rows:
            return
        self.rows = rows
        table = self.query_one(DataTable)
        at = table.cursor_row
        table.clear()
        for cells in rows:
            state_style = "red" if cells[1] == "lost" else "green"
            table.add_row(Text(cells[0], style="bold"), Text(cells[1], style=state_style), *map(Text, cells[2:]))
        if rows:
            table.move_cursor(row=min(at, len(rows) - 1))
