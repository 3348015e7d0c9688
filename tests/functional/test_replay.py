"""The dashboard in replay mode (``agentdeck replay``): a real run recorded to a file and played back with no
engine. The tree at any moment it is scrubbed to equals what the live run had at that event (task states by
``seq``); stepping, playing and speed changes move it; ``d`` asks, then exits asking to diverge from there."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.geometry import Region
from textual.widgets import Static

from db.models import WorkflowStatus
from engine.engine import Engine
from engine.recorder.fileformat import read_recording, write_recording
from tests.support.polling import until
from tests.support.replay_support import LiveStates, recording_of, shell_spec, watch_live_states
from tui.replay_app import make_replay_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.replay import DivergeRequest, ReplayScreen
from tui.widgets.replay_metrics import ReplayMetrics
from tui.widgets.replay_tree import ReplayTree
from tui.widgets.scrub_bar import ScrubBar


async def recorded_run(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, LiveStates]:
    live = watch_live_states(engine, monkeypatch)
    wf = await engine.submit(shell_spec())
    assert await engine.wait(wf) is WorkflowStatus.FAILED
    path = tmp_path / "run.agentdeck"
    write_recording(await recording_of(engine, wf), path)
    return path, live


async def test_scrubbing_the_replay_shows_the_states_the_live_run_had(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, live = await recorded_run(engine, monkeypatch, tmp_path)
    app = make_replay_app(read_recording(path), str(path), speed=1)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        tree = app.screen.query_one(ReplayTree)
        replay = screen.replay
        compared: list[int] = []

        def same_as_live() -> None:
            seq = replay.seq
            if live.get(seq):
                assert tree.statuses == live[seq], f"at seq {seq}: replay {tree.statuses}, live {live[seq]}"
                compared.append(seq)

        assert set(tree.statuses.values()) == {"pending"}
        for keys in (["right"], ["right", "right"], ["shift+right"], ["shift+right", "shift+right"], ["left"]):
            for key in keys:
                await pilot.press(key)
            same_as_live()
        await pilot.press("end")
        assert replay.at_end
        same_as_live()
        assert tree.statuses["broken"] == "failed" and tree.statuses["publish"] == "skipped"
        await pilot.press("home")
        assert replay.position == 0 and set(tree.statuses.values()) == {"pending"}
        bar = app.screen.query_one(ScrubBar)
        for fraction in (0.25, 0.5, 0.8):  # clicks on the scrub bar
            x = round(fraction * (bar.size.width - 1))
            await pilot.click(ScrubBar, offset=(x, 0))
            target = bar.position_at(x)
            await until(lambda: replay.position == target, pilot=pilot)  # noqa: B023  (read at once, in the loop)
            same_as_live()
        assert len(set(compared)) >= 6

        before = replay.position
        await pilot.press("n")
        assert replay.position == before + 1
        same_as_live()
        await pilot.press("comma")
        assert replay.position == before

        for _ in range(8):
            await pilot.press("plus")
        assert screen.clock.speed == 100
        await pilot.press("minus")
        assert screen.clock.speed == 64
        await pilot.press("space")
        await until(lambda: replay.position > before + 1, pilot=pilot)  # playing moves on by itself
        await pilot.press("space")
        assert not screen.clock.playing
        status = str(app.screen.query_one("#replay-status").render())
        assert status.startswith("REPLAY") and " 64" in status and f"/{len(replay)}" in status


async def test_diverge_here_asks_then_exits_with_the_moment(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, _ = await recorded_run(engine, monkeypatch, tmp_path)
    recording = read_recording(path)
    app = make_replay_app(recording, str(path))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        await pilot.press("right", "right")
        seq = screen.replay.seq
        await pilot.press("d")
        await until(lambda: not isinstance(app.screen, ReplayScreen), pilot=pilot)
        await pilot.press("y")
    assert app.return_value == DivergeRequest(recording.workflow.id, seq)


async def test_the_metrics_panel_follows_the_replay(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, _ = await recorded_run(engine, monkeypatch, tmp_path)
    app = make_replay_app(read_recording(path), str(path))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        panel = screen.query_one(ReplayMetrics)
        shell = panel.rows["sh"]
        assert (shell.running, shell.done, shell.failed, shell.mean_duration) == (0, 0, 0, None)
        await pilot.press("end")
        shell = panel.rows["sh"]
        # fetch, flaky, build and report completed; broken failed (publish was skipped: neither)
        assert (shell.running, shell.done, shell.failed) == (0, 4, 1)
        assert shell.mean_duration is not None and shell.mean_duration > 0
        await until(lambda: "✔4 ✘1" in rendered(panel), lambda: rendered(panel), pilot=pilot)
        tree = screen.query_one(ReplayTree)
        for keys in (["home"], ["shift+right"] * 4, ["right"] * 3):
            for key in keys:
                await pilot.press(key)
            done = sum(1 for status in tree.statuses.values() if status == "completed")
            assert panel.rows["sh"].done == done, f"at seq {screen.replay.seq}: the panel disagrees with the tree"


async def test_the_replay_keys_are_in_its_help_and_its_command_palette(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, _ = await recorded_run(engine, monkeypatch, tmp_path)
    app = make_replay_app(read_recording(path), str(path))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        await pilot.press("question_mark")
        help_screen = await until(lambda: isinstance(app.screen, HelpScreen) and app.screen, pilot=pilot)
        assert "diverge here" in help_screen.text and "shift+→" in help_screen.text
        await pilot.press("escape")
        await until(lambda: app.screen is screen, pilot=pilot)

        await pilot.press("ctrl+p")
        await until(lambda: isinstance(app.screen, CommandPalette), pilot=pilot)
        await pilot.press(*"step")
        await until(lambda: app.screen.query(CommandList).first().option_count > 0, pilot=pilot)
        await pilot.press("enter")
        await until(lambda: screen.replay.position == 1, pilot=pilot)  # "Step", the best match, ran

        await pilot.press("ctrl+p")
        await until(lambda: isinstance(app.screen, CommandPalette), pilot=pilot)
        await pilot.press(*"diverge")
        await until(lambda: app.screen.query(CommandList).first().option_count > 0, pilot=pilot)
        await pilot.press("enter")
        confirm = await until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen, pilot=pilot)
        await pilot.press("n")
        await until(lambda: app.screen is screen, pilot=pilot)
        assert confirm is not app.screen and app.return_value is None


def rendered(widget: Static) -> str:
    """What the widget shows on screen, line by line."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size)))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_replay_screenshots(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, size: tuple[int, int]
) -> None:
    """Not an assertion on looks: the screen mid-run renders at both sizes (convert the SVG with ``rsvg-convert`` to
    look at it)."""
    path, _ = await recorded_run(engine, monkeypatch, tmp_path)
    app = make_replay_app(read_recording(path), "run.agentdeck")
    async with app.run_test(size=size) as pilot:
        screen = await until(lambda: isinstance(app.screen, ReplayScreen) and app.screen, pilot=pilot)
        screen.go(len(screen.replay) * 2 // 3)
        await pilot.press("down", "down")
        await pilot.pause()
        svg = tmp_path / f"replay-{size[0]}x{size[1]}.svg"
        app.save_screenshot(str(svg))
        assert "REPLAY" in svg.read_text()
