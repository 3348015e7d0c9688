"""The dashboard in replay mode: a recording on screen with no engine and no database (``tui.screens.replay``).

``make_replay_app`` builds it for the command line (``agentdeck replay``) and for tests alike. It exits with a
``DivergeRequest`` when the person asked to diverge here, or None.
"""

from __future__ import annotations

from textual.app import App

from engine.recorder.model import Recording
from engine.replay import Replay
from tui.screens.replay import DivergeRequest, ReplayScreen


class ReplayApp(App[DivergeRequest | None]):
    TITLE = "agentdeck replay"

    def __init__(self, replay: Replay, file: str, speed: float = 1.0) -> None:
        super().__init__()
        self.replay = replay
        self.file = file
        self.speed = speed

    def on_mount(self) -> None:
        self.push_screen(ReplayScreen(self.replay, self.file, self.speed))


def make_replay_app(recording: Recording, file: str, speed: float = 1.0) -> ReplayApp:
    return ReplayApp(Replay(recording), file, speed)
