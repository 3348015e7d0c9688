"""How states look: one icon and colour per workflow and task status, a count of a workflow's tasks by state,
elapsed time, and LLM tokens and cost.

``UsageLedger`` sums the ``llm.usage`` events the dashboard receives per task (the pane header), per workflow
(the status bar) and per agent (the metrics view); ``usage_text`` is how a sum reads everywhere:
``tokens 1.2k in / 300 out · $0.0031``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from db.models import Event, EventType

ICONS = {
    "pending": ("○", "grey50"),
    "queued": ("◌", "grey62"),
    "running": ("▶", "green"),
    "paused": ("⏸", "yellow"),
    "waiting": ("✋", "orange1"),  # for a person: an open approval
    "retrying": ("↻", "dark_orange"),
    "completed": ("✔", "green3"),
    "failed": ("✘", "red"),
    "cancelled": ("■", "magenta"),
    "stopped": ("⏹", "grey70"),  # a workflow whose dashboard quit while it ran: resumable
    "skipped": ("·", "grey42"),
}


def icon(status: str) -> str:
    glyph, colour = ICONS.get(status, ("?", "white"))
    return f"[{colour}]{glyph}[/]"


def now_utc() -> datetime:
    """The clock running times are measured against (one place, so a snapshot test can stop it)."""
    return datetime.now(UTC)


def elapsed(start: datetime | None, end: datetime | None = None) -> str:
    """``1m05s`` between start and end (or now); empty when it never started."""
    if start is None:
        return ""
    seconds = max(0, int(((end or now_utc()) - start).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


#: The states a workflow's header counts, in the order it lists them (``waiting`` is a task waiting for a person).
SUMMARY = [
    ("running", "running", "green"),
    ("paused", "paused", "yellow"),
    ("retrying", "retrying", "dark_orange"),
    ("failed", "failed", "bold red"),
    ("cancelled", "cancelled", "magenta"),
    ("skipped", "skipped", "grey50"),
]


def task_summary(statuses: Iterable[str]) -> str:
    """``3 running · 1 failed · 2 skipped · ✋1`` (markup): how many tasks are in each state worth a look;
    empty when there is none (all pending or completed)."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    parts = [f"[{colour}]{counts[status]} {word}[/]" for status, word, colour in SUMMARY if counts.get(status)]
    if counts.get("waiting"):
        parts.append(f"[bold yellow]✋{counts['waiting']}[/]")
    return " [dim]·[/] ".join(parts)


@dataclass
class UsageTotals:
    """Tokens and cost of some LLM calls; ``unpriced`` counts calls whose model had no price (cost unknown)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, data: Mapping[str, Any]) -> None:
        """One ``llm.usage`` event's data."""
        self.calls += 1
        self.input_tokens += int(data.get("input_tokens") or 0)
        self.output_tokens += int(data.get("output_tokens") or 0)
        cost = data.get("cost_usd")
        if isinstance(cost, int | float):
            self.cost_usd += float(cost)
        else:
            self.unpriced += 1


class UsageLedger:
    """``llm.usage`` events summed per task, per workflow and per agent (agent names across workflows)."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], UsageTotals] = {}
        self.workflows: dict[str, UsageTotals] = {}
        self.agents: dict[str, UsageTotals] = {}
        self.version = 0  # bumped on every change, so views redraw only when there is something new

    def consume(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.type != EventType.LLM_USAGE:
                continue
            self.workflows.setdefault(event.workflow, UsageTotals()).add(event.data)
            self.agents.setdefault(event.agent or "?", UsageTotals()).add(event.data)
            if event.task is not None:
                self.tasks.setdefault((event.workflow, event.task), UsageTotals()).add(event.data)
            self.version += 1

    def task(self, workflow: str, task: str) -> UsageTotals | None:
        return self.tasks.get((workflow, task))

    def workflow(self, workflow: str) -> UsageTotals | None:
        return self.workflows.get(workflow)


def tokens(count: int) -> str:
    """``950``, ``1.2k``, ``3.4M``."""
    if count < 1_000:
        return str(count)
    if count < 999_950:  # what would round to 1000.0k reads as 1M
        return f"{count / 1_000:.1f}k".replace(".0k", "k")
    return f"{count / 1_000_000:.1f}M".replace(".0M", "M")


def dollars(usd: float) -> str:
    """``$1.23``, ``$0.042``, ``$0.0031``: enough digits to tell small calls apart."""
    if usd >= 1:
        return f"${usd:,.2f}"
    if usd >= 0.01:
        return f"${usd:.3f}"
    return f"${usd:.4f}"


def cost_text(totals: UsageTotals) -> str:
    """The cost, ``$0.0031``; ``no price`` when no call was priced, ``$0.0031 + unpriced`` when some were not."""
    if totals.unpriced == totals.calls:
        return "no price"
    return dollars(totals.cost_usd) + (" + unpriced" if totals.unpriced else "")


def usage_text(totals: UsageTotals) -> str:
    """``tokens 1.2k in / 300 out · $0.0031``."""
    return f"tokens {tokens(totals.input_tokens)} in / {tokens(totals.output_tokens)} out · {cost_text(totals)}"
