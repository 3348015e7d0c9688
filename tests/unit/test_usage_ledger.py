"""The dashboard's LLM usage ledger: ``llm.usage`` events summed per task, workflow and agent, and how sums read."""

from __future__ import annotations

from typing import Any

from db.models import Event, EventType
from tui.status import UsageLedger, UsageTotals, cost_text, tokens, usage_text


def usage(workflow: str, task: str | None, agent: str | None, **data: Any) -> Event:
    return Event(seq=0, type=EventType.LLM_USAGE, workflow=workflow, task=task, agent=agent, data=data)


def test_calls_are_summed_per_task_per_workflow_and_per_agent_across_workflows() -> None:
    ledger = UsageLedger()
    ledger.consume(
        [
            usage("wf1", "a", "writer", input_tokens=100, output_tokens=10, cost_usd=0.01),
            usage("wf1", "a", "writer", input_tokens=50, output_tokens=5, cost_usd=0.002),
            usage("wf1", "b", "critic", input_tokens=7, output_tokens=3, cost_usd=0.001),
            usage("wf2", "a", "writer", input_tokens=1_000, output_tokens=200, cost_usd=0.5),
        ]
    )
    task = ledger.task("wf1", "a")
    assert task is not None
    assert (task.calls, task.input_tokens, task.output_tokens) == (2, 150, 15)
    assert abs(task.cost_usd - 0.012) < 1e-12
    workflow = ledger.workflow("wf1")
    assert workflow is not None and (workflow.calls, workflow.input_tokens) == (3, 157)
    assert (ledger.agents["writer"].calls, ledger.agents["writer"].input_tokens) == (3, 1_150)
    assert ledger.task("wf2", "b") is None
    assert ledger.workflow("never") is None


def test_only_usage_events_count_and_only_they_bump_the_version() -> None:
    ledger = UsageLedger()
    ledger.consume([Event(seq=1, type=EventType.TASK_STARTED, workflow="wf", task="a", data={"input_tokens": 9})])
    assert (ledger.version, ledger.workflows) == (0, {})
    ledger.consume([usage("wf", "a", "x", input_tokens=1), usage("wf", "a", "x", input_tokens=1)])
    assert ledger.version == 2


def test_a_call_outside_a_task_or_agent_counts_for_the_workflow_and_an_unknown_agent() -> None:
    ledger = UsageLedger()
    ledger.consume([usage("wf", None, None, input_tokens=5, output_tokens=1, cost_usd=0.0)])
    assert ledger.tasks == {}
    workflow = ledger.workflow("wf")
    assert workflow is not None and workflow.input_tokens == 5
    assert ledger.agents["?"].calls == 1


def test_calls_without_a_price_are_counted_and_said_so() -> None:
    totals = UsageTotals()
    totals.add({"input_tokens": 10, "output_tokens": 2})  # no cost_usd: the model had no price
    assert (totals.calls, totals.unpriced, cost_text(totals)) == (1, 1, "no price")
    totals.add({"input_tokens": 1_234, "output_tokens": 300, "cost_usd": 0.0031})
    assert cost_text(totals) == "$0.0031 + unpriced"
    assert usage_text(totals) == "tokens 1.2k in / 302 out · $0.0031 + unpriced"


def test_missing_or_null_token_counts_read_as_zero() -> None:
    totals = UsageTotals()
    totals.add({"input_tokens": None, "cost_usd": 0.25})
    assert (totals.input_tokens, totals.output_tokens, cost_text(totals)) == (0, 0, "$0.250")


def test_token_counts_read_short() -> None:
    assert [tokens(n) for n in (950, 1_000, 1_250, 3_000_000, 3_400_000)] == ["950", "1k", "1.2k", "3M", "3.4M"]
    assert [tokens(n) for n in (999_949, 999_999)] == ["999.9k", "1M"]  # never "1000.0k"
