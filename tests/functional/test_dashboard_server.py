"""The workflow tree follows a workflow that another process runs on the same database (a ws server; embedded
databases are locked by one process). Only the database's change notifications can tell the tree about it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.polling import until
from tui.app import make_app
from tui.screens.main import MainScreen
from tui.widgets.workflow_tree import WorkflowTree

WORKFLOW = """
name: from-another-process
agents:
  sh: {kind: shell}
tasks:
  - id: first
    agent: sh
    run: "sleep 1; echo one"
  - id: second
    agent: sh
    depends_on: [first]
    run: "echo two"
"""


async def test_tree_shows_a_workflow_run_by_a_separate_headless_process(
    surreal_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"ui_{uuid.uuid4().hex[:8]}"
    for key, value in {
        "AGENTDECK_DB_NAMESPACE": namespace,
        "AGENTDECK_DB_USER": "root",
        "AGENTDECK_DB_PASS": "root",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(key, value)
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW)
    app = make_app(db_url=surreal_server_url)
    async with app.run_test(size=(120, 40)) as pilot:
        # The app opens its own engine behind a startup screen: wait for the tree's first snapshot.
        await until(
            lambda: isinstance(app.screen, MainScreen) and any(t._loaded for t in app.screen.query(WorkflowTree)),
            pilot=pilot,
        )
        runner = subprocess.Popen(  # noqa: ASYNC220 - a second process is the point; Popen returns at once
            [str(Path(sys.executable).parent / "agentdeck"), "run", str(workflow), "--headless", "--db",
             surreal_server_url],
            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            tree = app.screen.query_one(WorkflowTree)
            async with asyncio.timeout(60):
                while True:
                    found = [w for w in tree.workflows.values() if w.name == "from-another-process"]
                    tasks = tree.tasks.get(found[0].id, {}) if found else {}
                    # The workflow and task feeds are read independently: wait for both to show the end.
                    done = {t.status.value for t in tasks.values()} == {"completed"}
                    if found and found[0].status.value == "completed" and len(tasks) == 2 and done:
                        break
                    await pilot.pause(0.1)
            assert runner.wait(timeout=30) == 0, runner.stderr.read() if runner.stderr else ""
        finally:
            if runner.poll() is None:
                runner.kill()
