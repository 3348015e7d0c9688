"""Diverge here from a live workflow's history: in the checkpoint timeline (``b``), ``d`` on a checkpoint asks, then
starts a new workflow from it — what had completed there is carried over and never runs again, the rest runs, and
the workflow it came from stays as it was."""

from __future__ import annotations

from pathlib import Path

from db.models import WorkflowStatus
from engine.engine import Engine
from tests.functional.test_dashboard import spec, tree_text
from tests.support.polling import until
from tui.app import make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.timeline import CheckpointTimeline


async def test_d_in_the_timeline_diverges_from_the_highlighted_checkpoint(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    keys = ["a", "b", "c"]
    tasks = [
        {"id": k, "agent": "rec", "input": {"log": str(log), "delay": 0}, "depends_on": [keys[i - 1]] if i else []}
        for i, k in enumerate(keys)
    ]
    app = make_app(engine, start=spec(tasks))
    async with app.run_test(size=(140, 44)) as pilot:
        await until(lambda: "✔ ui-test" in tree_text(app), pilot=pilot)
        screen = await until(
            lambda: isinstance(app.screen, MainScreen) and app.screen.selected_workflow and app.screen, pilot=pilot
        )
        source = screen.selected_workflow
        assert source is not None
        checkpoints = await engine.stores.checkpoints.list(source)
        first = next(c for c in checkpoints if c.task == "a")

        async def diverge_from_the_first(answer: str) -> ConfirmScreen:
            await pilot.press("b")
            await until(lambda: isinstance(app.screen, CheckpointTimeline), pilot=pilot)
            await pilot.press("up", "up")  # from the newest (#3, after c) to #1 (after a)
            await pilot.press("d")
            confirm = await until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen, pilot=pilot)
            await pilot.press(answer)
            await until(lambda: app.screen is screen, pilot=pilot)
            assert isinstance(confirm, ConfirmScreen)
            return confirm

        asked = await diverge_from_the_first("n")
        assert f"checkpoint #{first.number}" in asked.question and "(a)" in asked.detail
        assert len(await engine.stores.workflows.list()) == 1, "a no started a workflow"

        await diverge_from_the_first("y")

        async def the_new_one() -> str | None:
            others = [w for w in await engine.stores.workflows.list() if w.id != source]
            return others[0].id if others else None

        new = await until(the_new_one, pilot=pilot)
        assert await engine.wait(new) is WorkflowStatus.COMPLETED
        assert log.read_text().split() == ["a", "b", "c", "b", "c"], "a ran again, or b and c did not"
        workflow = await engine.stores.workflows.get(new)
        assert workflow is not None
        assert workflow.diverged_from == {"workflow": source, "seq": first.event_seq, "checkpoint": first.id}
        await until(lambda: new in tree_text(app), pilot=pilot)
        origin = await engine.stores.workflows.get(source)
        assert origin is not None and origin.status is WorkflowStatus.COMPLETED
        assert any("diverged" in str(n.title) for n in app._notifications)
