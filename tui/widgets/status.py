"""How states look: one icon and colour per workflow and task status, and elapsed-time formatting."""

from __future__ import annotations

from datetime import UTC, datetime

ICONS = {
    "pending": ("○", "grey50"),
    "queued": ("◌", "grey62"),
    "running": ("▶", "green"),
    "paused": ("⏸", "yellow"),
    "retrying": ("↻", "dark_orange"),
    "completed": ("✔", "green3"),
    "failed": ("✘", "red"),
    "cancelled": ("■", "magenta"),
    "skipped": ("·", "grey42"),
}


def icon(status: str) -> str:
    glyph, colour = ICONS.get(status, ("?", "white"))
    return f"[{colour}]{glyph}[/]"


def elapsed(start: datetime | None, end: datetime | None = None) -> str:
    """``1m05s`` between start and end (or now); empty when it never started."""
    if start is None:
        return ""
    seconds = max(0, int(((end or datetime.now(UTC)) - start).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
