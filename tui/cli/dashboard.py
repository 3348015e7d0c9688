"""Opening the dashboard: ``demo``, ``run FILE`` and ``ui`` open the database and the engine here, hand them to
the app (same event loop), and close both deliberately when the app exits."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from db import connect
from engine.control import ControlChannels
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tui.cli._common import EXIT_OK, db_url_or_default

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


async def run_dashboard(
    db_url: str | None,
    redis_url: str | None,
    start: WorkflowSpec | None = None,
    variables: Mapping[str, str] | None = None,
) -> int:
    from tui.app import make_app

    url = db_url_or_default(db_url)
    async with connect(url) as db, Engine(db, redis_url=redis_url) as engine:
        channels = ControlChannels(engine, url)
        await channels.start()
        try:
            result = await make_app(engine, start=start, variables=variables).run_async()
        finally:
            await channels.close()
    for workflow, name in engine.stopped:  # closing the engine stopped them: say how to go on
        print(
            f"agentdeck: stopped {name} ({workflow}) while it ran — resume it with `agentdeck resume {workflow}`"
            " or shift+R in the dashboard",
            file=sys.stderr,
        )
    return result if isinstance(result, int) else EXIT_OK
