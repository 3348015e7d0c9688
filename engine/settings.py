"""Engine settings from ``AGENTDECK_*`` environment variables (command-line flags win over them)."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTDECK_", extra="ignore")

    redis: str | None = None  # AGENTDECK_REDIS: events over Redis instead of the in-process bus
    sandbox: Literal["local", "e2b"] = "local"  # AGENTDECK_SANDBOX: for workflows that do not choose one
    model: str | None = None  # AGENTDECK_MODEL: provider:model for llm agents
    prices: str | None = None  # AGENTDECK_PRICES: a YAML/JSON file of model prices laid over engine/llm/pricing.py
