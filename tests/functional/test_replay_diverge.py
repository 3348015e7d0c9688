"""``d`` in a replay, all the way: the replay app exits asking to diverge, and the dashboard the command line then
opens (``tui.cli.replay.DivergingDashboard``, what ``agentdeck replay FILE --db URL`` runs) imports the recording
into a fresh database and starts a live workflow there that carries the tasks completed by then (never run again)
and records where it diverged from."""

from __future__ import annotations

from pathlib import Path

from db.models import Event, WorkflowStatus
from engine.engine import Engine
from engine.recorder.fileformat import read_recording, write_recording
from engine.recorder.model import Recording
from tests.functional.test_dashboard import tree_text
from tests.support.polling import until
from tests.support.replay_support import recording_of, shell_spec
from tui.app import AgentDeckApp
from tui.cli.replay import DivergingDashboard
from tui.replay_app import make_replay_app
from tui.screens.main import MainScreen
from tui.screens.replay import DivergeRequest, ReplayScreen
from tui.widgets.replay_tree import ReplayTree
from tui.widgets.workflow_tree import WorkflowTree


async def recorded(engine: Engine, tmp_path: Path) -> tuple[Path, Recording]:
    wf = await engine.submit(shell_spec())
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    path = tmp_path / "run.agentdeck"
    write_recording(await recording_of(engine, wf), path)
    return path, read_recording(path)


async def diverge_from_the_replay(path: Path, recording: Recording, seq: int) -> tuple[DivergeRequest, set[str]]:
    """Scrub the replay to event ``seq``, press d and say yes: the request it exits with, and the tasks its tree
    showed completed then."""
    app = make_replay_app(recording, str(path))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        screen.go(screen.replay.position_of_seq(seq))
        await pilot.pause()
        done = {key for key, status in screen.query_one(ReplayTree).statuses.items() if status == "completed"}
        await pilot.press("d")
        await until(lambda: not isinstance(app.screen, ReplayScreen), pilot=pilot)
        await pilot.press("y")
    assert isinstance(app.return_value, DivergeRequest)
    return app.return_value, done


def shown(app: AgentDeckApp) -> str:
    """The dashboard's tree as text, once the main screen has laid it out (empty before)."""
    ready = isinstance(app.screen, MainScreen) and app.screen.query(WorkflowTree)
    return tree_text(app) if ready else ""


async def events_of(app: AgentDeckApp, workflow: str) -> list[Event]:
    own = app._local  # the engine the app opened on its database
    assert own is not None
    await own.recorder.flush()
    return await own.stores.events.list(workflow)


async def test_d_in_a_replay_starts_a_live_workflow_that_skips_what_was_done(engine: Engine, tmp_path: Path) -> None:
    path, recording = await recorded(engine, tmp_path)
    build_done = next(c for c in recording.checkpoints if c.task == "build")
    request, done_then = await diverge_from_the_replay(path, recording, build_done.event_seq)
    assert request.seq == build_done.event_seq and {"fetch", "build"} <= done_then

    dashboard = DivergingDashboard(read_recording(path), request.seq, f"surrealkv://{tmp_path / 'elsewhere.db'}")
    app = dashboard.app
    async with app.run_test(size=(160, 48)) as pilot:
        new = await until(lambda: dashboard.workflow, pilot=pilot)
        # Both are on the dashboard: the imported recording (finished as it was) and the new live workflow.
        await until(lambda: recording.workflow.id in shown(app) and new in shown(app), pilot=pilot)

        async def finished() -> bool:
            workflow = await app.engine.stores.workflows.get(new)
            return workflow is not None and WorkflowStatus(workflow.status).finished

        await until(finished, pilot=pilot)
        workflow = await app.engine.stores.workflows.get(new)
        assert workflow is not None and workflow.status is WorkflowStatus.FAILED  # broken fails again, as it did
        assert workflow.diverged_from == {
            "workflow": recording.workflow.id,
            "seq": request.seq,
            "checkpoint": build_done.id,
        }
        events = await events_of(app, new)
        carried = set(events[0].data["carried"])
        assert {"fetch", "build"} <= carried <= done_then
        started = {e.task for e in events if e.type == "task.started"}
        assert not started & carried, f"tasks completed before the moment ran again: {started & carried}"
        assert "broken" in started and "report" in started
        source_events = await events_of(app, recording.workflow.id)
        assert len(source_events) == len(recording.events), "the recording was not imported whole"


async def test_a_moment_that_cannot_be_diverged_from_is_said_and_the_recording_is_still_shown(
    engine: Engine, tmp_path: Path
) -> None:
    _, recording = await recorded(engine, tmp_path)
    dashboard = DivergingDashboard(recording, 10_000, "mem://")
    app = dashboard.app
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: recording.workflow.id in shown(app), pilot=pilot)
        await until(lambda: any("could not diverge" in str(n.message) for n in app._notifications), pilot=pilot)
        assert dashboard.workflow is None and app.failure is None
