"""Model prices: finding a model's price, costing a call, and the per-agent and ``AGENTDECK_PRICES`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.llm.pricing import PRICES, Price, PriceError, find_price, parse_price, price_for
from engine.llm.usage import CallUsage, usage_of_messages
from engine.settings import EngineSettings


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("openai:gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("openai:gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # a snapshot of the mini, not of gpt-4o
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("anthropic:claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
    ],
)
def test_listed_models_and_their_snapshots_find_their_price(model: str, listed: str) -> None:
    assert find_price(model, PRICES) == PRICES[listed]


@pytest.mark.parametrize("model", ["openai:gpt-4o-audio-preview", "ollama:llama3.1", "gpt-4", "mystery"])
def test_other_models_have_no_price(model: str) -> None:
    assert find_price(model, PRICES) is None


def test_a_call_costs_its_tokens_at_the_model_price_with_cache_reads_and_writes_apart() -> None:
    sonnet = Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)
    # 10k input of which 6k read from cache and 2k written to it, 1k output
    assert sonnet.cost(10_000, 1_000, cache_read_tokens=6_000, cache_write_tokens=2_000) == pytest.approx(
        (2_000 * 3.0 + 6_000 * 0.30 + 2_000 * 3.75 + 1_000 * 15.0) / 1e6
    )
    # no cache prices: cached input is charged as input
    assert Price(1.0, 2.0).cost(1_000, 1_000, cache_read_tokens=500) == pytest.approx(3_000 / 1e6)


def test_usage_metadata_becomes_call_usage_and_sums_over_a_conversation() -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    call = CallUsage.from_metadata(
        {"input_tokens": 50, "output_tokens": 7, "total_tokens": 57, "input_token_details": {"cache_read": 20}}
    )
    assert call == CallUsage(50, 7, 57, cache_read_tokens=20)
    assert CallUsage.from_metadata(None) is None
    messages = [
        HumanMessage("hi"),
        AIMessage("a", usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}),
        AIMessage("b", usage_metadata={"input_tokens": 30, "output_tokens": 4, "total_tokens": 34}),
    ]
    summary = usage_of_messages(messages, Price(1.0, 10.0))
    assert (summary.calls, summary.input_tokens, summary.output_tokens, summary.total_tokens) == (2, 40, 6, 46)
    assert summary.cost_usd == pytest.approx((40 * 1.0 + 6 * 10.0) / 1e6)
    assert usage_of_messages(messages, None).cost_usd is None


def test_an_agent_price_wins_over_the_table() -> None:
    assert price_for("openai:gpt-4o-mini", {"input": 1, "output": 2.5}) == Price(1.0, 2.5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cheap", "must be a mapping"),
        ({"input": 1}, "'output' is required"),
        ({"input": -1, "output": 1}, "'input' must be a number"),
        ({"input": 1, "output": True}, "'output' must be a number"),
        ({"input": 1, "output": 1, "per": "token"}, "unknown key 'per'"),
    ],
)
def test_malformed_prices_are_refused_with_the_reason(override: object, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        parse_price(override, "options.price")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("prices.yaml", "gpt-4o-mini: {input: 0.2, output: 0.8}\nlocal:qwen: {input: 0, output: 0}\n"),
        ("prices.json", '{"gpt-4o-mini": {"input": 0.2, "output": 0.8}, "local:qwen": {"input": 0, "output": 0}}'),
    ],
)
def test_a_prices_file_from_the_environment_overrides_and_extends_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.setenv("AGENTDECK_PRICES", str(path))
    assert price_for("openai:gpt-4o-mini") == Price(0.2, 0.8)
    assert price_for("local:qwen") == Price(0.0, 0.0)
    assert price_for("gpt-4o") == PRICES["gpt-4o"]  # what the file does not name keeps its table price


def test_a_broken_prices_file_says_which_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("gpt-4o: {input: 1}\n")
    with pytest.raises(PriceError, match=rf"{path}: gpt-4o: 'output' is required"):
        price_for("gpt-4o", settings=EngineSettings(prices=str(path)))
    with pytest.raises(PriceError, match="cannot read prices"):
        price_for("gpt-4o", settings=EngineSettings(prices=str(tmp_path / "absent.yaml")))
