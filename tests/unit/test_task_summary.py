"""The header's count of a workflow's tasks by state: what needs a look, at a glance (issue 12, item 3)."""

from __future__ import annotations

from rich.text import Text

from tui.status import task_summary


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def test_counts_the_states_worth_a_look_in_a_fixed_order() -> None:
    statuses = ["running", "completed", "skipped", "failed", "running", "waiting", "skipped", "running", "pending"]
    assert plain(task_summary(statuses)) == "3 running · 1 failed · 2 skipped · ✋1"


def test_nothing_to_say_when_all_are_done_or_waiting_to_start() -> None:
    assert task_summary(["completed", "pending", "queued"]) == ""


def test_failures_are_red() -> None:
    text = Text.from_markup(task_summary(["failed"]))
    assert [str(span.style) for span in text.spans] == ["bold red"]
