"""``agentdeck workers [--redis URL] [--json]``: the workers there are, from the roster they keep in Redis.

Each ``agentdeck worker`` says at every heartbeat what it runs (``engine.workers.roster``); this lists them, the
ones heard from within three leases as *up*, the others as *lost* (dead, or cut off from Redis), with how long ago
each was heard, how many commands it runs of how many it may, how long it has been up, how many commands it has
taken, and which tasks it runs now. No database is needed.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tui.cli._common import BadInput, print_json, run_async

RedisFlag = Annotated[
    str | None, typer.Option("--redis", help="Redis URL the workers take commands from. Env: AGENTDECK_REDIS.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON object per worker, one per line.")]


def register(app: typer.Typer) -> None:
    app.command("workers")(workers_command)


def workers_command(redis: RedisFlag = None, json: JsonFlag = False) -> None:
    """List the workers taking commands from Redis: up or lost, what each runs now."""
    from engine.settings import EngineSettings

    url = redis if redis is not None else EngineSettings().redis
    if not url:
        raise BadInput("agentdeck: workers: give --redis URL or set AGENTDECK_REDIS (where the workers take commands)")

    async def work() -> list[Any]:
        from engine.workers.roster import read_roster

        return await read_roster(url)

    found = run_async(work)
    if json:
        for info in found:
            print_json(info.to_json())
        return
    if not found:
        print("no workers: start one with `agentdeck worker --redis URL`", file=sys.stderr)
        return
    from tui.roster_rows import roster_row

    print(table([roster_row(info) for info in found]))


def table(rows: list[list[str]]) -> str:
    from tui.roster_rows import HEADER as header

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in [header, *rows]]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)
