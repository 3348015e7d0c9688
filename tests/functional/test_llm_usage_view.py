"""The dashboard shows what LLM agents spend: tokens and cost in the pane header and per agent in the metrics.

A real engine runs an ``llm`` agent whose provider is a scripted fake (``FakeToolCallingChatModel``); the
``llm.usage`` events it causes reach the screen through the same feed as every other event.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from textual.widgets import DataTable, Label, Static, TabbedContent

from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.fake_llm import reply, script
from tests.support.polling import until
from tui.app import make_app
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.metrics_view import MetricsView

MODEL = "openai:gpt-4o-mini"  # $0.15 in / $0.60 out per million tokens in the shipped table
# 12,000 in and 2,000 out: 12000 * 0.15e-6 + 2000 * 0.60e-6 = $0.0030
HEADER = "tokens 12k in / 2k out · $0.0030"


@pytest.fixture
def scripted_model() -> Iterator[None]:
    _, unregister = script(
        MODEL,
        [
            reply(tool=("run_command", {"command": "echo working"}), tokens=(5_000, 100)),
            reply("All done.", tokens=(7_000, 1_900)),
        ],
    )
    yield
    unregister()


def llm_workflow() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "llm-ui",
            "agents": {"coder": {"kind": "llm", "model": MODEL}},
            "tasks": [{"id": "code", "agent": "coder", "input": {"prompt": "echo something"}}],
        }
    )


@pytest.mark.usefixtures("scripted_model")
async def test_the_pane_header_and_the_metrics_show_tokens_and_cost_after_a_run(engine: Engine) -> None:
    app = make_app(engine, start=llm_workflow())
    async with app.run_test(size=(140, 40)) as pilot:
        grid = app.screen.query_one(AgentGrid)

        def header() -> str:
            # Title, then tokens and cost, as the pane header shows them.
            return " · ".join(pane.header_text() for pane in grid.panes.values())

        await until(lambda: HEADER in header(), pilot=pilot)
        assert "code · coder" in header()

        await pilot.press("3")
        await pilot.press("left_square_bracket")  # from the first chart tab back round to the last: LLM
        tabs = app.screen.query_one("#metric-tabs", TabbedContent)
        await until(lambda: tabs.active == "m-llm", pilot=pilot)
        metrics = app.screen.query_one(MetricsView)
        agents = metrics.query_one("#llm-agents", DataTable)
        await until(lambda: agents.row_count == 1, pilot=pilot)
        assert agents.display and not metrics.query_one("#llm-empty").display
        assert [str(cell) for cell in agents.get_row_at(0)] == ["coder", "2", "12k", "2k", "$0.0030"]
        workflows = metrics.query_one("#llm-workflows", DataTable)
        assert [str(cell) for cell in workflows.get_row_at(0)][1:] == ["2", "12k", "2k", "$0.0030"]

        # The top bar shows the selected workflow's total.
        selection = app.screen.query_one("#selection", Label)
        await until(lambda: "tokens 12k in / 2k out · $0.0030" in str(selection.render()), pilot=pilot)


async def test_without_llm_calls_the_llm_tab_says_why_it_is_empty_and_brackets_go_through_the_tabs(
    engine: Engine,
) -> None:
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("right_square_bracket")  # from the Agents tab: to the Metrics tab first
        await until(lambda: app.screen.query_one("#tabs", TabbedContent).active == "tab-metrics", pilot=pilot)
        tabs = app.screen.query_one("#metric-tabs", TabbedContent)
        seen = [tabs.active]
        for _ in range(5):
            await pilot.press("right_square_bracket")
            await until(lambda: tabs.active != seen[-1], pilot=pilot)
            seen.append(tabs.active)
        assert seen == ["m-agents", "m-health", "m-system", "m-ux", "m-llm", "m-agents"]
        await pilot.press("left_square_bracket")
        await until(lambda: tabs.active == "m-llm", pilot=pilot)
        metrics = app.screen.query_one(MetricsView)
        empty = metrics.query_one("#llm-empty", Static)
        await until(lambda: empty.display and empty.region.height > 0, pilot=pilot)
        assert "No LLM calls yet" in str(empty.render())
        assert not metrics.query_one("#llm-agents", DataTable).display
