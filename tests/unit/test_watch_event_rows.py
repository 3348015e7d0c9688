"""The event log's rows for watchpoint events and tool calls: what a person reads in the Events tab."""

from __future__ import annotations

from typing import Any

from db.models import Event, EventType
from tui.describe import TOOL_ARGS_CHARS
from tui.widgets.event_log import event_line, event_width


def row(kind: str, task: str | None = "heat", **data: Any) -> str:
    event = Event(seq=1, type=kind, workflow="nightly", task=task, data=data)
    text = event_line(event)
    assert event_width(event) == text.cell_len, "the log's width estimate must match the drawn row"
    return text.plain


def test_a_trigger_row_says_it_paused_and_why() -> None:
    reason = 'output ~ "ALARM" (line=ALARM temperature 97, stream=stdout)'
    text = row(EventType.WATCHPOINT_TRIGGERED, watchpoint="wp-1", when='output ~ "ALARM"', name="hot", scope="heat",
               task="heat", conditions=[], reason=reason)  # fmt: skip
    assert f"paused by hot: {reason}" in text


def test_added_and_removed_rows_name_the_watchpoint_and_its_task() -> None:
    added = row(EventType.WATCHPOINT_ADDED, task=None, watchpoint="wp-1", when="cost_usd > 0.50", name=None,
                scope="heat")  # fmt: skip
    assert "cost_usd > 0.50 (task heat)" in added
    removed = row(EventType.WATCHPOINT_REMOVED, task=None, watchpoint="wp-2", when="running > 5m", name="slow",
                  scope=None)  # fmt: skip
    assert removed.rstrip().endswith("slow: running > 5m")


def test_a_tool_call_row_shows_the_tool_and_its_arguments_cut_short() -> None:
    assert 'shell {"cmd":"ls -la"}' in row(EventType.TOOL_CALLED, tool="shell", args={"cmd": "ls -la"}, call="c1")
    long = row(EventType.TOOL_CALLED, tool="search", args={"q": "x" * 500}, call="c2")
    assert long.endswith("…") and len(long.split("search ", 1)[1]) == TOOL_ARGS_CHARS


def test_a_watchpoint_the_engine_gave_up_says_why() -> None:
    why = "its regex took longer than 50 ms to search one chunk of output (it backtracks too much); disarmed"
    removed = row(EventType.WATCHPOINT_REMOVED, task=None, watchpoint="wp-3", when='output ~ "(a+)+$"', name=None,
                  scope=None, reason=why)  # fmt: skip
    assert removed.rstrip().endswith(f'output ~ "(a+)+$": {why}')
