"""A task running in an E2B sandbox shows its output in its dashboard pane, as a local task does (Pilot).

E2B is a FAKE here (``tests.support.fake_e2b``: fakes of its REST API and of envd, the in-sandbox agent); the engine,
the e2b SDK and the dashboard are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.fake_e2b import FakeCloud, fake_e2b_cloud
from tests.support.polling import until
from tui.app import make_app
from tui.widgets.agent_grid import AgentGrid


@pytest.fixture
async def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeCloud]:
    async with fake_e2b_cloud(tmp_path, monkeypatch) as fake:
        yield fake


async def test_output_of_a_task_in_an_e2b_sandbox_reaches_its_pane(cloud: FakeCloud, tmp_path: Path) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "cloud-ui",
            "agents": {"sh": {"kind": "shell"}},
            "tasks": [
                {
                    "id": "remote",
                    "agent": "sh",
                    "sandbox": "e2b",
                    # Waits for a file the test writes into the sandbox, so the pane is seen while the task runs.
                    "run": "echo from-the-cloud; pwd; while [ ! -e go ]; do sleep 0.05; done; echo done >&2",
                }
            ],
        }
    )
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        app = make_app(engine, start=spec)
        async with app.run_test(size=(120, 40)) as pilot:
            grid = app.screen.query_one(AgentGrid)

            def pane_lines() -> list[str]:
                panes = list(grid.panes.values())
                return list(panes[0].log_view.lines) if panes else []

            await until(lambda: "from-the-cloud" in pane_lines(), "the sandbox's output in the pane", pilot=pilot)
            workdir = pane_lines()[pane_lines().index("from-the-cloud") + 1]
            assert workdir.startswith(str(cloud.workdir)), "the command ran in its directory inside the sandbox"
            (cloud.envd.home / workdir / "go").write_text("")  # the fake sandbox's files are this machine's
            await until(lambda: "done" in pane_lines(), "the last line in the pane", pilot=pilot)
            workflow = app.started_workflow
            assert workflow is not None
            assert await engine.wait(workflow) is WorkflowStatus.COMPLETED
            pane = next(iter(grid.panes.values()))
            await until(lambda: "completed" in pane.header_text(), "the pane to say the task completed", pilot=pilot)
            assert pane.header_text().startswith("✔ remote · sh")
    assert cloud.api.alive() == []
