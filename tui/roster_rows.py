"""The workers' roster (``engine.workers.roster``) as table rows, the same for ``agentdeck workers`` and the
dashboard's workers screen (``W``): name, up or lost, running of slots, when last heard, up for, taken, tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.workers.roster import WorkerInfo
from tui.status import elapsed

HEADER = ["WORKER", "STATE", "RUNNING", "SEEN", "UP", "TAKEN", "TASKS"]


def roster_row(info: WorkerInfo, now: datetime | None = None) -> list[str]:
    """One worker's cells, in ``HEADER``'s order (a lost worker's running count and tasks are not known: ``-``)."""
    now = now or datetime.now(UTC)
    running = f"{len(info.running)}/{info.concurrency}" if not info.lost else f"-/{info.concurrency}"
    heard = elapsed(now - timedelta(seconds=info.seen_s), now)
    up = elapsed(datetime.fromtimestamp(info.started, UTC), now) if not info.lost else "-"
    tasks = ", ".join(info.running) if not info.lost else ""
    return [info.name, "lost" if info.lost else "up", running, f"{heard} ago", up, str(info.taken), tasks]
