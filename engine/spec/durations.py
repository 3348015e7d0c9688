"""Durations as workflow files write them: seconds (``90``, ``1.5``) or with units (``90s``, ``5m``, ``1h30m``)."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" comes before "m" so that "500ms" is not read as 500 minutes followed by a stray "s".
_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s)\s*)+")
_SECONDS = re.compile(_NUMBER)

DURATION_HINT = "seconds or a duration like 90s, 5m, 1h30m, 500ms"


def parse_duration(value: str | int | float) -> float:
    """Return a duration in seconds.

    Numbers are seconds. Strings are seconds (``"90"``) or parts with units ``ms``, ``s``, ``m``, ``h`` that add up
    (``"1h30m"``, ``"1m 30s"``, ``"1.5h"``, ``"500ms"``).

    Raises:
        ValueError: The value is negative, not finite, or not written as above (``"5 minutes"``).
        TypeError: The value is neither a number nor a string (``True`` included).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"a duration must be a number or a string, not {type(value).__name__}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds >= 0")
        return float(value)
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {value!r}: use {DURATION_HINT}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
