"""The output screen: one search of a chunk for all of a workflow's output patterns, which lets the watchpoints skip
a chunk only when none of their patterns can match in it."""

from __future__ import annotations

from datetime import UTC, datetime

import regex

from db.models import Event, EventType
from engine.watch.conditions import OutputScreen


def clear(screen: OutputScreen, *lines: str) -> bool:
    data = {"stream": "stdout", "lines": list(lines)}
    event = Event(workflow="wf", seq=1, type=EventType.TASK_OUTPUT, task="t", data=data, ts=datetime.now(UTC))
    return screen.clear(event, list(lines))


def test_only_patterns_that_mean_the_same_in_an_alternation_are_screened() -> None:
    ok = ["Traceback", "^FATAL", "password|secret|token=[A-Za-z0-9]{20}", "a(?:b|c)+", r"(x)y"]
    kept_apart = ["(?i)out of memory", r"(a)\1", r"line\Z", r"\Aline", "(?P<n>x)"]
    assert all(OutputScreen.screenable(regex.compile(p)) for p in ok)
    assert not any(OutputScreen.screenable(regex.compile(p)) for p in kept_apart)


def test_a_chunk_is_clear_only_when_no_pattern_matches_any_line() -> None:
    screen = OutputScreen([regex.compile(p) for p in ("^FATAL", "password|secret", "never-[0-9]+$")])
    assert clear(screen, "building", "ok", "a FATAL in the middle is not at a line start")
    assert not clear(screen, "building", "FATAL: disk full", "ok")  # ^ at a line start, mid chunk
    assert not clear(screen, "the secret is out")
    assert not clear(screen, "never-42", "next")  # $ at a line end, mid chunk


def test_a_pattern_that_backtracks_makes_the_screen_say_maybe_instead_of_hanging() -> None:
    screen = OutputScreen([regex.compile("(a+)+$"), regex.compile("Traceback")])
    assert not clear(screen, "a" * 30_000 + "!")  # out of time: each is then searched on its own
