"""Offline replay of a flight recording (``engine.recorder.model.Recording``): the workflow's state at any event,
derived from its events alone, with snapshots for fast seeking, and a clock that plays it back at a speed.

No engine and no database: the dashboard's replay mode (``tui.screens.replay``) and the replay benchmark build on
this. ``Replay`` is the model, ``ReplayState`` what it holds at a position, ``ReplayClock`` the playback clock.
"""

from engine.replay.clock import ReplayClock
from engine.replay.model import Replay
from engine.replay.state import NodeView, ReplayState, TaskView

__all__ = ["NodeView", "Replay", "ReplayClock", "ReplayState", "TaskView"]
