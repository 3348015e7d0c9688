"""The dashboard in replay mode: a recording on screen with no engine and no database (``tui.screens.replay``).

``make_replay_app`` builds it for the command line (``agentdeck replay``, which opens it playing) and for tests
alike (opened paused at the start unless ``playing``). It exits with a ``DivergeRequest`` when the person asked to
diverge here, or None.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen

from engine.recorder.model import Recording
from engine.replay import Replay
from tui.screens.replay import DivergeRequest, ReplayScreen


class ReplayApp(App[DivergeRequest | None]):
    TITLE = "agentdeck replay"
    # The dashboard's styles: its modals (confirm, help) look and sit the same here.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    # The pane of the task picked in the tree (app CSS: it must win over app.tcss's .agent-pane.finished).
    CSS = "ReplayGrid .agent-pane.-chosen { border: round $accent; }"

    def __init__(self, replay: Replay, file: str, speed: float = 1.0, playing: bool = False) -> None:
        super().__init__()
        self.replay = replay
        self.file = file
        self.speed = speed
        self.playing = playing

    def on_mount(self) -> None:
        self.push_screen(ReplayScreen(self.replay, self.file, self.speed, self.playing))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, ReplayScreen):
            yield SystemCommand("Play / pause", "Play the recording on, or stop it (space)", screen.action_toggle_play)
            yield SystemCommand("Step", "One event on (n)", partial(screen.action_step, 1))
            yield SystemCommand("Step back", "One event back (,)", partial(screen.action_step, -1))
            yield SystemCommand("Go to the start", "Before the first event (Home)", partial(screen.action_seek, 0))
            yield SystemCommand("Go to the end", "After the last event (End)", partial(screen.action_seek, -1))
            yield SystemCommand("Faster", "The next speed up: 1, 2, 4 … 64, 100x (+)", partial(screen.action_speed, 1))
            yield SystemCommand("Slower", "The next speed down, to 1x (-)", partial(screen.action_speed, -1))
            yield SystemCommand("Diverge here", "Start a new live workflow from this moment (d)", screen.action_diverge)
            yield SystemCommand("Help", "The replay's keys explained (?)", screen.action_help)


def make_replay_app(recording: Recording, file: str, speed: float = 1.0, playing: bool = False) -> ReplayApp:
    return ReplayApp(Replay(recording), file, speed, playing)
