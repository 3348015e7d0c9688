"""The memory explorer's results: one row per memory — score, type, agent, age, provenance and the first line of
what it says — with the columns fitted to the width, so the content keeps what the fixed columns leave.

A memory a rollback took back (``hidden_by`` set) is dimmed and marked ``↶``; an expired short-term one is dimmed
and marked ``⌛``. Search leaves both out unless asked; the list of recent memories has them and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from db.models import Memory, utcnow

HIDDEN_MARK = "↶"
EXPIRED_MARK = "⌛"
_FIXED = {"score": 5, "type": 10, "age": 8}  # "score", "short_term", "59m ago"
_AGENT_MIN, _AGENT_MAX = 8, 24  # a sixth of the room, within these
_PROVENANCE_MIN, _PROVENANCE_SHARE = 14, 0.45  # of what the fixed columns leave, at most, when it needs that much


@dataclass(frozen=True)
class MemoryRow:
    """A memory as listed: ``score`` is the search's cosine similarity, None when listing recent memories."""

    memory: Memory
    score: float | None = None


def age(created: datetime, now: datetime) -> str:
    """``3m ago`` — the largest whole unit."""
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def provenance(memory: Memory, names: Mapping[str, str], width: int | None = None) -> str:
    """``workflow-name/task #attempt`` (as much of it as the memory has), or ``—`` when no task wrote it. Cut to
    ``width``, the workflow's name gives way first: the task and attempt are what tell memories of it apart."""
    if memory.workflow is None:
        return "—"
    name = names.get(memory.workflow, memory.workflow)
    tail = f"/{memory.task}" if memory.task is not None else ""
    tail += f" #{memory.attempt}" if memory.attempt is not None else ""
    if width is not None and len(name) + len(tail) > width:
        if len(tail) <= width - 4:  # a name cut to three letters and "…" still says which workflow
            return clip(name, width - len(tail)) + tail
        return clip(name + tail, width)
    return name + tail


def first_line(content: str) -> str:
    line = content.strip().splitlines()[0] if content.strip() else ""
    return line + (" …" if "\n" in content.strip() else "")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def is_expired(memory: Memory, now: datetime) -> bool:
    return memory.expires_at is not None and memory.expires_at <= now


class MemoryResults(DataTable[Text]):
    """The rows shown (``rows_shown``) follow ``show``; the width they are fitted to follows the widget's size."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.rows_shown: list[MemoryRow] = []
        self._names: Mapping[str, str] = {}
        self._fitted_to = -1

    def show(self, rows: list[MemoryRow], names: Mapping[str, str]) -> None:
        """List ``rows`` (best or newest first) with the cursor on the first."""
        self.rows_shown = rows
        self._names = names
        self._fill(keep_cursor=False)

    def memory_at_cursor(self) -> Memory | None:
        if not self.rows_shown or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row].memory

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._fitted_to:
            self._fill(keep_cursor=True)

    def _widths(self, rows: list[tuple[str, str]]) -> tuple[int, int, int]:
        """(agent, provenance, content) widths for this table's width; ``rows`` are (agent, provenance) texts."""
        columns = 6
        room = self.size.width - 1 - 2 * self.cell_padding * columns  # one column for the scrollbar
        agent_cap = max(_AGENT_MIN, min(_AGENT_MAX, room // 6))
        agent = min(agent_cap, max([len("agent"), *(len(a) for a, _ in rows)]))
        rest = max(0, room - sum(_FIXED.values()) - agent)
        wanted = max([len("provenance"), *(len(p) for _, p in rows)])
        provenance_width = min(wanted, max(_PROVENANCE_MIN, int(rest * _PROVENANCE_SHARE)))
        return agent, provenance_width, max(len("content"), rest - provenance_width)

    def _fill(self, *, keep_cursor: bool) -> None:
        cursor = self.cursor_row if keep_cursor else 0
        self._fitted_to = self.size.width
        now = utcnow()
        texts = [(row.memory.agent, provenance(row.memory, self._names)) for row in self.rows_shown]
        agent_w, provenance_w, content_w = self._widths(texts)
        self.clear(columns=True)
        self.add_column("score", width=_FIXED["score"], key="score")
        self.add_column("type", width=_FIXED["type"], key="type")
        self.add_column("agent", width=agent_w, key="agent")
        self.add_column("age", width=_FIXED["age"], key="age")
        self.add_column("provenance", width=provenance_w, key="provenance")
        self.add_column("content", width=content_w, key="content")
        for row, (agent, _) in zip(self.rows_shown, texts, strict=True):
            memory = row.memory
            mark = HIDDEN_MARK if memory.hidden_by is not None else EXPIRED_MARK if is_expired(memory, now) else ""
            style = "dim" if mark else ""
            content = clip(f"{mark} {first_line(memory.content)}" if mark else first_line(memory.content), content_w)
            self.add_row(
                Text(f"{row.score:.2f}" if row.score is not None else "", style=style, justify="right"),
                Text(memory.memory_type, style=style),
                Text(clip(agent, agent_w), style=style),
                Text(age(memory.created_at, now), style=style),
                Text(provenance(memory, self._names, provenance_w), style=style),
                Text(content, style=style),
                key=memory.id,
            )
        if self.rows_shown:
            self.move_cursor(row=min(cursor, len(self.rows_shown) - 1))
