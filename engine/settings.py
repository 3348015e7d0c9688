"""Engine settings from ``AGENTDECK_*`` environment variables (command-line flags win over them).

A value that cannot be used (``AGENTDECK_SANDBOX=docker``) raises `db.settings.SettingsError`: one line naming the
variable, which the CLI prints before exiting 2.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.settings import SettingsError, explain_settings


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTDECK_", extra="ignore")

    redis: str | None = None  # AGENTDECK_REDIS: events over Redis instead of the in-process bus
    sandbox: Literal["local", "e2b", "worker"] = "local"  # AGENTDECK_SANDBOX: for workflows that do not choose one
    model: str | None = None  # AGENTDECK_MODEL: provider:model for llm agents
    prices: str | None = None  # AGENTDECK_PRICES: a YAML/JSON file of model prices laid over engine/llm/pricing.py
    embedder: str | None = None  # AGENTDECK_EMBEDDER: what turns memories into vectors (engine.embeddings)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise SettingsError(explain_settings(exc)) from None
