"""The playback clock of a replay: which position of a recording is due at a moment of wall time, at a speed.

Recording time is the events' ``ts``. Played at speed ``s``, one second of wall time is ``s`` seconds of recording.
Long idle gaps are compressed: a gap between two events longer than ``max_gap_s`` (2 s of recording time by
default) plays as ``max_gap_s``, so a workflow that waited ten minutes for a person does not leave the screen
still for ten minutes; the status line still shows the recorded time of each event. Times are passed in (seconds
of ``time.monotonic()``, or anything that only grows), so the clock is tested without waiting.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime

MIN_SPEED = 1.0
MAX_SPEED = 100.0
#: The speeds ``+``/``-`` step through.
SPEEDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0)
MAX_GAP_S = 2.0


def compressed_offsets(times: list[datetime], max_gap_s: float = MAX_GAP_S) -> list[float]:
    """For each event, its play time in seconds after the first, with every gap capped at ``max_gap_s``."""
    out: list[float] = []
    total = 0.0
    for index, when in enumerate(times):
        if index:
            gap = (when - times[index - 1]).total_seconds()
            total += min(max(gap, 0.0), max_gap_s)
        out.append(total)
    return out


def clamp_speed(speed: float) -> float:
    return max(MIN_SPEED, min(MAX_SPEED, float(speed)))


class ReplayClock:
    """Plays positions 0..N of a recording whose events happened at ``times``."""

    def __init__(self, times: list[datetime], speed: float = 1.0, max_gap_s: float = MAX_GAP_S) -> None:
        self._offsets = compressed_offsets(times, max_gap_s)
        self.speed = clamp_speed(speed)
        self.playing = False
        self._base_position = 0
        self._base_offset = 0.0  # play time at the base position
        self._base_wall = 0.0

    @property
    def length(self) -> int:
        return len(self._offsets)

    def _offset_of(self, position: int) -> float:
        """Play time of position ``position`` (the time of the event that brought the state there)."""
        if position <= 0 or not self._offsets:
            return 0.0
        return self._offsets[min(position, len(self._offsets)) - 1]

    def due(self, now: float) -> int:
        """The position that should be shown at wall time ``now``."""
        if not self.playing:
            return self._base_position
        offset = self._base_offset + (now - self._base_wall) * self.speed
        return max(self._base_position, bisect_right(self._offsets, offset))

    def seconds_to_next(self, now: float) -> float | None:
        """Wall seconds until the next event is due (None when paused or at the end)."""
        position = self.due(now)
        if not self.playing or position >= len(self._offsets):
            return None
        offset = self._base_offset + (now - self._base_wall) * self.speed
        return max(0.0, (self._offsets[position] - offset) / self.speed)

    def play(self, now: float, position: int) -> None:
        """Play on from ``position`` (the one shown) at wall time ``now``."""
        self._rebase(now, position)
        self.playing = True

    def pause(self, now: float) -> int:
        """Stop where the clock is; returns the position it stopped at."""
        position = self.due(now)
        self._rebase(now, position)
        self.playing = False
        return position

    def moved(self, now: float, position: int) -> None:
        """The position was changed by hand (seek, step): play goes on from there."""
        self._rebase(now, position)

    def set_speed(self, now: float, speed: float) -> float:
        """Change speed without jumping: the position due now stays due; returns the speed (clamped to 1 to 100)."""
        position = self.due(now)
        offset = self._base_offset + (now - self._base_wall) * self.speed if self.playing else self._base_offset
        self.speed = clamp_speed(speed)
        self._base_position, self._base_offset, self._base_wall = position, offset, now
        return self.speed

    def faster(self, now: float) -> float:
        return self.set_speed(now, next((s for s in SPEEDS if s > self.speed), MAX_SPEED))

    def slower(self, now: float) -> float:
        return self.set_speed(now, next((s for s in reversed(SPEEDS) if s < self.speed), MIN_SPEED))

    def _rebase(self, now: float, position: int) -> None:
        self._base_position = max(0, min(position, len(self._offsets)))
        self._base_offset = self._offset_of(self._base_position)
        self._base_wall = now
