"""One memory in full: what it says, every field of where it came from, and its metadata as JSON.

The content is the agent's text (scrubbed when it was stored): it is shown as plain text, never read as markup.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from db.models import Memory, utcnow
from tui.widgets.memory_results import age, is_expired


def _when(moment: datetime, now: datetime) -> str:
    relative = age(moment, now) if moment <= now else "in " + age(now, moment).removesuffix(" ago")
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({relative})"


def _or_dash(value: object) -> Text:
    return Text("—", style="dim") if value is None else Text(str(value))


def provenance_table(memory: Memory, workflow_name: str | None, now: datetime) -> Table:
    """Every provenance field, one a line; the ones a memory does not have read ``—``."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    workflow = _or_dash(memory.workflow)
    if memory.workflow is not None and workflow_name:
        workflow = Text.assemble((workflow_name, "bold"), " ", (memory.workflow, "dim"))
    table.add_row("workflow", workflow)
    table.add_row("task", _or_dash(memory.task))
    table.add_row("attempt", _or_dash(memory.attempt))
    table.add_row("graph step", _or_dash(memory.graph_step))
    table.add_row("checkpoint", _or_dash(memory.checkpoint))
    table.add_row("embedder", _or_dash(memory.embedder))
    table.add_row("created", Text(_when(memory.created_at, now)))
    if memory.expires_at is None:
        expires = Text("never", style="dim")
    else:
        expires = Text(_when(memory.expires_at, now) + (" — expired, left out of search" if is_expired(memory, now)
                                                          else ""))  # fmt: skip
    table.add_row("expires", expires)
    if memory.hidden_by is None:
        table.add_row("hidden by", Text("— (found by search)", style="dim"))
    else:
        table.add_row("hidden by", Text.assemble(memory.hidden_by, (" — taken back by a rollback", "bold yellow")))
    return table


def memory_detail(memory: Memory, workflow_name: str | None = None, now: datetime | None = None) -> RenderableType:
    now = now or utcnow()
    head = Text.assemble((memory.memory_type, "bold"), " memory of ", (memory.agent, "bold"), "  ", (memory.id, "dim"))
    parts: list[RenderableType] = [head, Text(""), Text(memory.content), Text(""), Text("provenance", "bold underline")]
    parts.append(provenance_table(memory, workflow_name, now))
    parts += [Text(""), Text("metadata", "bold underline")]
    parts.append(JSON.from_data(memory.metadata, default=str) if memory.metadata else Text("{}", style="dim"))
    return Group(*parts)


class MemoryDetailView(Static):
    """A memory in full (``memory_detail``)."""

    def __init__(self, memory: Memory, workflow_name: str | None = None, **kwargs: object) -> None:
        super().__init__(memory_detail(memory, workflow_name), **kwargs)  # type: ignore[arg-type]
        self.memory = memory
