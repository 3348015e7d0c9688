"""Quitting is not crashing (issue 12, point 2): ``q`` while a workflow runs stores it as ``stopped`` — resumable at
once, its clock stopped, nothing downstream skipped — while a workflow whose engine was SIGKILLed stays
``running`` and is offered as a crash. Driven with Pilot over a real engine on a ``surrealkv://`` file, a real
killed ``agentdeck run --headless`` process and the real ``workflows list`` command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from db import connect
from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from tests.functional.test_dashboard import COUNTER, spec, tree_text
from tests.integration.test_cli_engine import agentdeck, clean_env
from tests.integration.test_recovery import after_events, start_and_kill
from tests.support.polling import until
from tui.app import make_app
from tui.status import elapsed
from tui.widgets.agent_grid import AgentGrid

SIZE = (120, 36)


def notices(app: object) -> list[str]:
    return [str(n.message) for n in app._notifications]  # type: ignore[attr-defined]


async def test_q_stores_a_running_workflow_as_stopped_and_a_killed_one_stays_a_crash(tmp_path: Path) -> None:
    crashed, _, _, url, _ = start_and_kill(tmp_path, after_events("task.completed", 2))
    work = tmp_path / "work"
    tasks = [
        {"id": "quick", "agent": "sh", "run": "echo quick done"},
        {"id": "count", "agent": "sh", "run": COUNTER, "depends_on": ["quick"]},
        {"id": "after", "agent": "sh", "run": "echo after", "depends_on": ["count"]},
    ]

    # 1. The dashboard runs a workflow; q while `count` prints.
    async with connect(url) as db, Engine(db, workdir_root=work) as engine:
        app = make_app(engine, start=spec(tasks))
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.started_workflow is not None, pilot=pilot)
            grid = app.screen.query_one(AgentGrid)
            await until(lambda: any(p.lines_seen >= 3 for p in grid.panes.values()), pilot=pilot)
            stopped = app.started_workflow
            assert stopped is not None
            await pilot.press("q")
    assert engine.stopped == [(stopped, "ui-test")], "the command line is told what to say on exit"

    # 2. What is stored: stopped, no owner, the interrupted attempt cancelled, nothing downstream skipped.
    async with connect(url) as db, Engine(db, workdir_root=work) as engine:
        row = await engine.stores.workflows.get(stopped)
        assert row is not None and row.status is WorkflowStatus.STOPPED and row.owner is None
        states = {t.key: t.status for t in await engine.stores.tasks.list(stopped)}
        assert states == {"quick": TaskStatus.COMPLETED, "count": TaskStatus.CANCELLED, "after": TaskStatus.PENDING}
        events = await engine.stores.events.list(stopped)
        assert events[-1].type == "workflow.stopped"
        killed = await engine.stores.workflows.get(crashed)
        assert killed is not None and killed.status is WorkflowStatus.RUNNING

    # 3. `workflows list` tells them apart.
    listed = agentdeck("workflows", "list", "--db", url, env=clean_env(tmp_path))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("wf-")}
    assert lines[stopped].split()[1] == "stopped" and lines[crashed].split()[1] == "running*"
    assert "dashboard was closed while it ran" in listed.stdout and "crash or kill" in listed.stdout

    # 4. The dashboard again: ⏹ with a frozen clock vs a crash, each explained; shift+R resumes the stopped one.
    async with connect(url) as db, Engine(db, workdir_root=work) as engine:
        app = make_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: "⏹ ui-test" in tree_text(app), pilot=pilot)
            texts = await until(lambda: len(notices(app)) >= 2 and notices(app), pilot=pilot)
            assert any(stopped in n and "stopped when its dashboard quit" in n for n in texts), texts
            assert any(crashed in n and "crashed or was killed" in n for n in texts), texts
            # The clock stopped with the workflow: its row shows the time from start to stop, however long ago.
            assert row.started_at is not None
            await until(lambda: (datetime.now(UTC) - row.updated_at).total_seconds() > 2.5, pilot=pilot)
            await until(lambda: "⏹ ui-test" in tree_text(app), pilot=pilot)  # a tick has redrawn it since
            line = next(x for x in tree_text(app).splitlines() if "⏹ ui-test" in x)
            assert line.endswith(elapsed(row.started_at, row.updated_at)), line

            app.screen.show_task(stopped)  # type: ignore[attr-defined]
            await pilot.press("R")

            async def completed() -> bool:
                found = await engine.stores.workflows.get(stopped)
                return found is not None and found.status is WorkflowStatus.COMPLETED

            await until(completed, pilot=pilot, limit_s=120)
            events = await engine.stores.events.list(stopped)
    starts = [e.task for e in events if e.type == "task.started"]
    assert starts.count("quick") == 1, "the quick task completed before the stop and did not run again"
    assert starts.count("count") == 2 and starts.count("after") == 1, starts
