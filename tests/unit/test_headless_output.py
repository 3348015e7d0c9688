"""``run --headless`` in human mode prints every output line, whether an event carries a chunk or one old line."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from db.models import Event
from tui.cli.headless import human_line, make_printer

TS = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)


def output(data: dict[str, Any]) -> Event:
    return Event(seq=1, ts=TS, type="task.output", workflow="wf-1", task="build", agent="sh", data=data)


def test_a_chunk_prints_one_line_per_output_line() -> None:
    out = io.StringIO()
    make_printer(as_json=False, out=out)(output({"stream": "stdout", "lines": ["one", "", "three"]}))
    assert out.getvalue().splitlines() == ["09:30:05   build │ one", "09:30:05   build │ ", "09:30:05   build │ three"]


def test_an_old_one_line_event_still_prints() -> None:
    assert human_line(output({"stream": "stderr", "line": "warning: x"})) == "09:30:05   build │ warning: x"


def test_an_empty_chunk_prints_nothing() -> None:
    out = io.StringIO()
    make_printer(as_json=False, out=out)(output({"stream": "stdout", "lines": []}))
    assert out.getvalue() == ""


def test_an_agents_own_event_type_without_a_dot_prints_as_named() -> None:
    # Agents emit their own types through ctx.event(...); one without a dot used to raise in the printer.
    line = human_line(Event(seq=2, ts=TS, type="hello", workflow="wf-1", task="build", agent="py", data={"n": 1}))
    assert line is not None and "build hello" in line
