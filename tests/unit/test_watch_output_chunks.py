"""An output watchpoint searches each chunk of output it is given, never the text of an earlier chunk.

The chunk's joined text is shared by the watchpoints that search the same event; it was cached by ``id(event)``,
and CPython gives a new event the address of the one just freed, so every chunk after the first was searched as the
first one's text: a line matching the watchpoint went unnoticed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from db.models import Event, EventType
from engine.spec.watch_expr import parse_watch
from engine.watch.evaluate import Outcome, WatchEvaluator


def _chunk(seq: int, *lines: str) -> Event:
    data = {"stream": "stdout", "lines": list(lines)}
    return Event(workflow="wf", seq=seq, type=EventType.TASK_OUTPUT, task="t", data=data, ts=datetime.now(UTC))


def test_each_chunk_is_searched_even_when_the_previous_event_was_freed() -> None:
    evaluator = WatchEvaluator(parse_watch('output ~ "BOOM"'), None, lambda outcome: None)
    outcomes: list[Outcome] = []
    for seq in range(1, 41):
        event = _chunk(seq, "BOOM here" if seq % 2 == 0 else "tick")
        outcome = evaluator.observe(event)
        if outcome is not None:
            outcomes.append(outcome)
        del event  # freed, as the engine drops an event once it is stored and published
    assert len(outcomes) == 20
    assert all(o.held[0].values["line"] == "BOOM here" for o in outcomes)
