"""The replay's agent panes (``tui.widgets.replay_panes``): the live dashboard's panes, played from a recording of a
real run. Scrubbed to any moment, the panes are exactly the tasks the live engine had running at that event, each
ending with the last line its task had printed by then; playing on adds lines as events pass; a finished task's
output is still there to read when it is picked in the tree."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from db.models import EventType, WorkflowStatus
from engine.engine import Engine
from engine.recorder.fileformat import read_recording, write_recording
from engine.recorder.model import Recording
from tests.support.polling import until
from tests.support.replay_support import LiveStates, recording_of, shell_spec, watch_live_states
from tui.replay_app import ReplayApp, make_replay_app
from tui.screens.replay import ReplayScreen
from tui.widgets.agent_pane import AgentPane
from tui.widgets.replay_panes import ReplayGrid
from tui.widgets.replay_tree import ReplayTree
from tui.widgets.scrub_bar import ScrubBar

#: The task states that have a pane on the live dashboard (a retrying task's stays between attempts).
PANE_STATES = {"running", "retrying", "paused", "waiting"}


async def recorded(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Recording, LiveStates]:
    live = watch_live_states(engine, monkeypatch)
    wf = await engine.submit(shell_spec())
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    path = tmp_path / "run.agentdeck"
    write_recording(await recording_of(engine, wf), path)
    return read_recording(path), live


async def opened(app: ReplayApp, pilot: Pilot[Any]) -> ReplayScreen:
    screen: ReplayScreen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
    return screen


def last_printed(recording: Recording, task: str, seq: int) -> str | None:
    """The last line ``task`` had printed by event ``seq``, from the recorded events."""
    lines = [
        line
        for event in recording.events
        if event.seq <= seq and event.task == task and event.type == EventType.TASK_OUTPUT
        for line in event.output_lines
    ]
    return lines[-1] if lines else None


def printed(pane: AgentPane) -> list[str]:
    """The lines a pane shows, without the grid's own notes (``— attempt failed: …; retrying``)."""
    return [line for line in pane.log_view.lines if not line.startswith("— ")]


def panes_match(grid: ReplayGrid, recording: Recording, live: LiveStates, seq: int) -> str:
    """Empty when the panes on screen are the tasks running live at ``seq`` with their last lines; else what is
    wrong (``until`` shows it)."""
    running = sorted(key for key, status in live.get(seq, {}).items() if status in PANE_STATES)
    if sorted(grid.titles()) != running:
        return f"at seq {seq}: panes {grid.titles()}, running live {running}"
    for pane in grid.visible_panes():
        want = last_printed(recording, pane.task_key, seq)
        got = printed(pane)
        if (got[-1] if got else None) != want:
            return f"at seq {seq}: {pane.task_key} ends with {got[-1:] or 'nothing'}, printed {want!r}"
    return ""


async def test_scrubbed_panes_are_the_tasks_running_then_ending_with_their_last_line(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recording, live = await recorded(engine, monkeypatch, tmp_path)
    app = make_replay_app(recording, "run.agentdeck")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await opened(app, pilot)
        replay, grid = screen.replay, screen.query_one(ReplayGrid)
        assert grid.titles() == [] and screen.query_one("#replay-agents-empty").display
        compared: set[str] = set()
        # Every moment, from the end back to the start: each is a jump back, so the panes are built anew.
        for position in range(len(replay), -1, -1):
            screen.go(position)
            wrong = partial(panes_match, grid, recording, live, replay.seq)
            await until(lambda: not wrong(), wrong, pilot=pilot)  # noqa: B023  (awaited here, in the loop)
            compared.update(grid.titles())
        assert {"fetch", "flaky", "build", "broken", "report"} <= compared  # every task that ran had its pane
        # Clicks on the scrub bar, and the keys that jump.
        bar = screen.query_one(ScrubBar)
        for fraction in (0.3, 0.6, 0.15):
            x = round(fraction * (bar.size.width - 1))
            await pilot.click(ScrubBar, offset=(x, 0))
            await until(lambda: replay.position == bar.position_at(x), pilot=pilot)  # noqa: B023
            await until(lambda: not panes_match(grid, recording, live, replay.seq), pilot=pilot)
        for key in ("right", "shift+right", "left", "end", "home"):
            await pilot.press(key)
            await until(lambda: not panes_match(grid, recording, live, replay.seq), pilot=pilot)


async def test_playing_on_adds_lines_to_the_panes_as_events_pass(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recording, _ = await recorded(engine, monkeypatch, tmp_path)
    app = make_replay_app(recording, "run.agentdeck")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await opened(app, pilot)
        replay, grid = screen.replay, screen.query_one(ReplayGrid)
        rebuilds = grid.rebuilds
        grew = 0
        while not replay.at_end:  # one event at a time (n): the grid is fed, never rebuilt
            await pilot.press("n")
            event = replay.current_event
            assert event is not None
            if event.type == EventType.TASK_OUTPUT and event.task is not None:
                pane = grid.panes[(event.workflow, event.task)]
                await until(lambda: printed(pane)[-1:] == event.output_lines[-1:], pilot=pilot)  # noqa: B023
                grew += 1
            if event.type == EventType.TASK_STARTED:  # a pane opens as its task starts
                assert event.task in grid.titles()
        assert grid.rebuilds == rebuilds and grew >= 5
        await pilot.pause()
        assert "report" in grid.titles()  # done a moment (of the recording) ago: it lingers while paused
        # A failed pane stays until dismissed, as live; x dismisses it.
        broken = grid.panes[(recording.workflow.id, "broken")]
        assert broken.state == "failed" and printed(broken)[-1] == "trying"
        await pilot.press("x")
        await until(lambda: "broken" not in grid.titles(), pilot=pilot)

        await pilot.press("home")
        await until(lambda: not grid.titles(), pilot=pilot)
        for _ in range(8):
            await pilot.press("plus")
        rebuilds = grid.rebuilds
        await pilot.press("space")  # plays on by itself at 100x, to the end
        await until(lambda: replay.at_end and not screen.clock.playing, pilot=pilot)
        assert grid.rebuilds == rebuilds  # played: fed event by event
        assert "broken" in grid.titles()  # the failure waits to be read


async def test_a_finished_tasks_output_can_still_be_read(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recording, _ = await recorded(engine, monkeypatch, tmp_path)
    app = make_replay_app(recording, "run.agentdeck")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(app, pilot)
        grid, tree = screen.query_one(ReplayGrid), screen.query_one(ReplayTree)
        await pilot.press("end")
        await until(lambda: not grid.titles(), pilot=pilot)  # nothing runs at the end

        tree.move_cursor(tree._task_nodes["broken"])
        broken = await until(lambda: grid.panes.get((recording.workflow.id, "broken")), pilot=pilot)
        await until(lambda: printed(broken)[-1:] == ["trying"], lambda: str(printed(broken)), pilot=pilot)
        assert grid.titles() == ["broken"] and broken.has_class("-chosen")
        assert "failed" in broken.header_text()

        tree.move_cursor(tree._task_nodes["fetch"])  # another one: its pane replaces the first
        fetch = await until(lambda: grid.panes.get((recording.workflow.id, "fetch")), pilot=pilot)
        await until(lambda: printed(fetch) == ["fetching", "got 3 files"], lambda: str(printed(fetch)), pilot=pilot)
        assert grid.titles() == ["fetch"] and "completed" in fetch.header_text()

        # Scrubbed back to when fetch ran: its pane is the running one, still chosen; enter maximises it.
        await pilot.press("home")
        started = next(e.seq for e in recording.events if e.task == "fetch" and e.type == EventType.TASK_STARTED)
        screen.go(screen.replay.position_of_seq(started))
        await until(lambda: grid.titles() == ["fetch"], lambda: str(grid.titles()), pilot=pilot)
        pane = grid.panes[(recording.workflow.id, "fetch")]
        assert pane.state == "running" and pane.has_class("-chosen")
        await pilot.press("enter")
        assert grid.maximised is pane
        await pilot.press("m")
        assert grid.maximised is None


async def test_it_can_open_playing(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As ``agentdeck replay FILE --speed N`` opens it: playing at once; space pauses."""
    recording, _ = await recorded(engine, monkeypatch, tmp_path)
    app = make_replay_app(recording, "run.agentdeck", speed=100, playing=True)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await opened(app, pilot)
        await until(lambda: screen.replay.position > 0, pilot=pilot)
        if screen.clock.playing:
            await pilot.press("space")
            assert not screen.clock.playing
        assert "paused" in screen.status_text() or screen.replay.at_end
