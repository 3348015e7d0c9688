"""The watchpoint expression language: what each condition means, and bad expressions told with their column."""

from __future__ import annotations

import pytest

from engine.spec import SpecError, parse_workflow
from engine.spec.watch_expr import (
    AllOf,
    AnyOf,
    Budget,
    Failures,
    NodeRuns,
    OutputMatch,
    Running,
    ToolRepeats,
    WatchSyntaxError,
    parse_watch,
)


def test_each_kind_of_condition_reads_as_written() -> None:
    assert parse_watch("cost_usd > 0.50").root == Budget(">", 0.5, measure="cost_usd", text="cost_usd > 0.50")
    assert parse_watch("tokens > 200k").root == Budget(">", 200_000, measure="tokens", text="tokens > 200k")
    assert parse_watch("tokens >= 1.5M").root == Budget(">=", 1_500_000, measure="tokens", text="tokens >= 1.5M")
    assert parse_watch("running > 1h30m").root == Running(">", 5400, text="running > 1h30m")
    assert parse_watch("tool_repeats >= 3").root == ToolRepeats(">=", 3, text="tool_repeats >= 3")
    assert parse_watch("node check runs >= 2").root == NodeRuns(">=", 2, node="check", text="node check runs >= 2")
    assert parse_watch('node "a b" runs > 1').root == NodeRuns(">", 1, node="a b", text='node "a b" runs > 1')
    assert parse_watch("failures >= 3 within 10m").root == Failures(
        ">=", 3, kind="failures", window_s=600, text="failures >= 3 within 10m"
    )
    assert parse_watch("retries >= 2").root == Failures(">=", 2, kind="retries", window_s=None, text="retries >= 2")
    found = parse_watch(r'output ~ "Traceback|pass\"word"').root
    assert isinstance(found, OutputMatch) and found.pattern.pattern == 'Traceback|pass"word'


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    root = parse_watch("cost_usd > 1 or tokens > 2k and running > 5m").root
    assert isinstance(root, AnyOf) and isinstance(root.parts[1], AllOf)
    grouped = parse_watch("(cost_usd > 1 or tokens > 2k) and running > 5m")
    assert isinstance(grouped.root, AllOf) and isinstance(grouped.root.parts[0], AnyOf)
    assert [c.text for c in grouped.conditions] == ["cost_usd > 1", "tokens > 2k", "running > 5m"]


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("cost > 1", 1, "unknown measure 'cost'"),
        ("cost_usd < 1", 10, "use > or >="),
        ("cost_usd >", 11, "ends too early: expected a number"),
        ("tokens > 5m", 10, "200k or 1.5M"),
        ("running > 5 minutes", 13, "got 'minutes'"),
        ('output ~ "(unclosed"', 20, "bad regular expression: missing )"),  # where the ) is missing
        ('output ~ "x**"', 13, "bad regular expression: multiple repeat"),
        ('output ~ "x', 10, "no closing"),
        ("output ~ x", 10, 'a quoted "text"'),
        ("tool_repeats >= 0", 17, "1 or more"),
        ("running > 5m within 1m", 21, "'within' goes with failures or retries"),
        ("(cost_usd > 1", 14, "expected ')'"),
        ("cost_usd > 1 and", 17, "expected a condition"),
        ("", 1, "empty"),
        ('output ~ ""', 10, "empty"),
    ],
)
def test_a_bad_expression_says_what_is_wrong_at_which_column(text: str, column: int, words: str) -> None:
    with pytest.raises(WatchSyntaxError) as caught:
        parse_watch(text)
    assert caught.value.column == column, str(caught.value)
    assert words in str(caught.value) and str(caught.value).startswith(f"column {column}: ")


def test_a_workflow_file_reports_a_bad_watch_at_its_line() -> None:
    text = """name: w
watch:
  - cost_usd > 0.5
  - {when: "tokens >", name: budget}
agents: {sh: {kind: shell}}
tasks:
  - id: a
    agent: sh
    run: echo hi
    watch: node check runs >= x
"""
    with pytest.raises(SpecError) as caught:
        parse_workflow(text, "w.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("w.yaml:4: watch[1].when is not a valid watch expression: column 9: ")
    assert lines[1].startswith(
        "w.yaml:10: task 'a': watch[0].when is not a valid watch expression: column 20: expected a number"
    )


def test_a_workflow_file_declares_watchpoints_at_both_levels() -> None:
    spec = parse_workflow(
        "name: w\nwatch: cost_usd > 1\nagents: {sh: {kind: shell}}\n"
        "tasks:\n  - {id: a, agent: sh, run: echo, watch: [{when: running > 5m, name: slow}, output ~ 'x']}\n",
        "w.yaml",
    )
    assert [(w.when, w.name) for w in spec.watch] == [("cost_usd > 1", None)]
    assert [(w.when, w.name) for w in spec.tasks[0].watch] == [("running > 5m", "slow"), ("output ~ 'x'", None)]


def test_the_command_line_says_which_watchpoint_paused_a_workflow_and_how_to_go_on() -> None:
    from datetime import UTC, datetime

    from db.models import Event, EventType
    from tui.cli.headless import human_line

    data = {"watchpoint": "wp-1", "when": "node check runs >= 2", "reason": "node check runs >= 2 (node=check, runs=2)"}
    ts = datetime(2026, 1, 2, 9, 30, 5, tzinfo=UTC)
    line = human_line(
        Event(seq=7, ts=ts, type=EventType.WATCHPOINT_TRIGGERED, workflow="wf-1", task="write_code", data=data)
    )
    assert line == (
        "09:30:05 ◉ write_code watchpoint 'node check runs >= 2' paused the workflow: "
        "node check runs >= 2 (node=check, runs=2)\n"
        "         resume: agentdeck workflows resume wf-1   remove it: agentdeck workflows watch wf-1 --remove wp-1"
    )
