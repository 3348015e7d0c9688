"""What an LLM call costs: a price table in USD per million tokens, and the cost of one call's token counts.

The table below covers common OpenAI and Anthropic models at their published list prices **as of 2025-11**.
Prices change: override them rather than trust them.

- per agent: ``options.price: {input: 0.15, output: 0.60}`` (USD per million tokens; ``cache_read`` and
  ``cache_write`` are optional);
- for every agent: ``AGENTDECK_PRICES=/path/prices.yaml`` (YAML or JSON) mapping model names to the same shape,
  ``{"gpt-4o-mini": {"input": 0.15, "output": 0.60}}``; its entries win over the table below.

Model names match with or without their provider prefix (``openai:gpt-4o-mini`` and ``gpt-4o-mini``) and with a
dated snapshot suffix (``gpt-4o-mini-2024-07-18``, ``claude-sonnet-4-5-20250929``, ``claude-3-5-haiku-latest``).
A model with no price costs ``None``: its tokens are still counted.

Token counts follow LangChain's ``usage_metadata``: ``input_tokens`` includes cached input, broken out in
``input_token_details`` as ``cache_read`` and ``cache_creation``; those parts are charged at the cache prices when
the model has them, else at the input price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.settings import EngineSettings

PRICES_AS_OF = "2025-11"
PER_TOKENS = 1_000_000


class PriceError(ValueError):
    """A price override is malformed (the message says where)."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cache prices are ``None`` when the provider has none (cached input costs input)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0, cache_write_tokens: int = 0
    ) -> float:
        """USD for one call; ``input_tokens`` includes the cached ones, as LangChain counts them."""
        fresh = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
        read = self.cache_read if self.cache_read is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        total = fresh * self.input + cache_read_tokens * read + cache_write_tokens * write + output_tokens * self.output
        return total / PER_TOKENS


# List prices as of 2025-11, USD per million tokens (input, output, cached input read, cache write).
# OpenAI bills cache writes as ordinary input; Anthropic charges 1.25x input for 5-minute cache writes.
PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00, cache_read=0.125),
    "gpt-5-mini": Price(0.25, 2.00, cache_read=0.025),
    "gpt-5-nano": Price(0.05, 0.40, cache_read=0.005),
    "gpt-4.1": Price(2.00, 8.00, cache_read=0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, cache_read=0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, cache_read=0.025),
    "gpt-4o": Price(2.50, 10.00, cache_read=1.25),
    "gpt-4o-mini": Price(0.15, 0.60, cache_read=0.075),
    "o1": Price(15.00, 60.00, cache_read=7.50),
    "o3": Price(2.00, 8.00, cache_read=0.50),
    "o3-mini": Price(1.10, 4.40, cache_read=0.55),
    "o4-mini": Price(1.10, 4.40, cache_read=0.275),
    # Anthropic
    "claude-opus-4-5": Price(5.00, 25.00, cache_read=0.50, cache_write=6.25),
    "claude-opus-4-1": Price(15.00, 75.00, cache_read=1.50, cache_write=18.75),
    "claude-opus-4": Price(15.00, 75.00, cache_read=1.50, cache_write=18.75),
    "claude-sonnet-4-5": Price(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-sonnet-4": Price(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-3-7-sonnet": Price(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-haiku-4-5": Price(1.00, 5.00, cache_read=0.10, cache_write=1.25),
    "claude-3-5-haiku": Price(0.80, 4.00, cache_read=0.08, cache_write=1.00),
    "claude-3-haiku": Price(0.25, 1.25, cache_read=0.03, cache_write=0.30),
}

# A snapshot of a listed model: a date (2024-07-18, 20250929), "latest", or a version tag (v1:0).
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest|v\d[\w:.-]*)")


def bare_model_name(model: str) -> str:
    """``gpt-4o-mini`` for ``openai:gpt-4o-mini``; names without a provider come back unchanged."""
    return model.split(":", 1)[1] if ":" in model else model


def find_price(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of ``model`` in ``table`` (exact name, then the longest listed name it is a snapshot of)."""
    for name in (model, bare_model_name(model)):
        if name in table:
            return table[name]
    name = bare_model_name(model)
    candidates = [key for key in table if name.startswith(key) and _SNAPSHOT.fullmatch(name[len(key) :])]
    return table[max(candidates, key=len)] if candidates else None


def parse_price(value: Any, where: str) -> Price:
    """A ``Price`` from ``{input: X, output: Y[, cache_read: R][, cache_write: W]}`` (USD per million tokens).

    Raises:
        PriceError: Not a mapping, a missing or negative price, or an unknown key; the message starts with ``where``.
    """
    if not isinstance(value, Mapping):
        raise PriceError(f"{where}: must be a mapping like {{input: 0.15, output: 0.6}} (USD per million tokens)")
    unknown = sorted(set(value) - {"input", "output", "cache_read", "cache_write"})
    if unknown:
        raise PriceError(f"{where}: unknown key {unknown[0]!r} (allowed: input, output, cache_read, cache_write)")
    numbers: dict[str, float | None] = {}
    for key in ("input", "output", "cache_read", "cache_write"):
        item = value.get(key)
        if item is None and key in ("input", "output"):
            raise PriceError(f"{where}: '{key}' is required (USD per million tokens)")
        if item is not None and (isinstance(item, bool) or not isinstance(item, int | float) or item < 0):
            raise PriceError(f"{where}: '{key}' must be a number of USD per million tokens, got {item!r}")
        numbers[key] = None if item is None else float(item)
    return Price(
        input=numbers["input"] or 0.0,
        output=numbers["output"] or 0.0,
        cache_read=numbers["cache_read"],
        cache_write=numbers["cache_write"],
    )


def load_price_file(path: Path) -> dict[str, Price]:
    """Prices by model name from a YAML or JSON file (JSON is YAML 1.2).

    Raises:
        PriceError: The file cannot be read or an entry is malformed.
    """
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise PriceError(f"{path}: cannot read prices: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PriceError(f"{path}: must map model names to {{input: X, output: Y}} (USD per million tokens)")
    return {str(model): parse_price(price, f"{path}: {model}") for model, price in data.items()}


def price_table(settings: EngineSettings | None = None) -> dict[str, Price]:
    """The shipped table with ``AGENTDECK_PRICES`` (when set) laid over it."""
    path = (settings or EngineSettings()).prices
    table = dict(PRICES)
    if path is not None:
        table.update(load_price_file(Path(path)))
    return table


def price_for(model: str, override: Any = None, settings: EngineSettings | None = None) -> Price | None:
    """The price of ``model``: the agent's ``options.price`` if given, else the table (with ``AGENTDECK_PRICES``).

    Raises:
        PriceError: The override or the prices file is malformed.
    """
    if override is not None:
        return parse_price(override, "options.price")
    return find_price(model, price_table(settings))
