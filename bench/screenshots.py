"""The README's screenshots: the real dashboard running the bundled demo, saved as SVG by Textual at 160x48 and 80x24.

``uv run python -m bench.screenshots`` runs the demo on ``mem://`` once per size (about a minute each), answers the
code writer's review with ``y`` as a person would, and saves the screen once the benchmark task (``measure``) has
printed a few blocks — the tree full of finished tasks and graph nodes, a pane streaming output — to
``docs/screenshots/demo-WxH.svg``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tui.app import make_app
from tui.cli.dashboard import DEMO

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SIZES = [(160, 48), (80, 24)]
PATIENCE_S = 300.0


async def shoot(size: tuple[int, int]) -> Path:
    from engine.spec import load_workflow
    from tui.screens.approval import ApprovalScreen
    from tui.widgets.agent_grid import AgentGrid

    app = make_app(db_url="mem://", start=load_workflow(DEMO))
    async with app.run_test(size=size) as pilot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE_S

        def measuring() -> bool:
            grid = app.screen.query(AgentGrid)
            panes = grid.first().panes if grid else {}
            return any(key[1] == "measure" and pane.lines_seen >= 6 for key, pane in panes.items())

        while not measuring():
            if loop.time() > deadline:
                raise TimeoutError(f"the demo did not reach its benchmark task within {PATIENCE_S:.0f} s")
            if isinstance(app.screen, ApprovalScreen):
                await pilot.press("y")
            await pilot.pause(0.1)
        await pilot.pause(0.3)  # one more frame: the pane's latest lines are drawn
        width, height = size
        OUT.mkdir(parents=True, exist_ok=True)
        return Path(app.save_screenshot(f"demo-{width}x{height}.svg", str(OUT)))


def main() -> None:
    for size in SIZES:
        print(asyncio.run(shoot(size)), file=sys.stderr)


if __name__ == "__main__":
    main()
