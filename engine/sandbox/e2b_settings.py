"""Settings of the E2B sandbox backend, from ``E2B_*`` and ``AGENTDECK_E2B_*`` environment variables.

The e2b SDK's own variables keep their meaning: ``E2B_API_KEY`` (required for the cloud), ``E2B_DOMAIN``,
``E2B_API_URL`` and ``E2B_SANDBOX_URL`` (self-hosted E2B) and ``E2B_DEBUG`` (talk to an envd on localhost, no API:
for development). agentdeck's choices for the sandboxes it makes are ``AGENTDECK_E2B_*``. Imported without the SDK,
so checking a configuration costs nothing.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.settings import SettingsError, explain_settings

#: Where a user gets a key, for messages.
KEY_HINT = (
    "set E2B_API_KEY (create a key at https://e2b.dev/dashboard?tab=keys), or run the tasks locally with "
    "AGENTDECK_SANDBOX=local"
)


class E2BSettings(BaseSettings):
    """How agentdeck uses E2B (see the README's "Running tasks in E2B sandboxes")."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTDECK_E2B_", extra="ignore", populate_by_name=True, env_parse_none_str="none"
    )

    template: str = "base"
    """AGENTDECK_E2B_TEMPLATE: the sandbox template (name or id) every sandbox is made from."""
    scope: Literal["task", "agent"] = "task"
    """AGENTDECK_E2B_SCOPE: ``task`` gives each task its own sandbox; ``agent`` lets the tasks of one agent in one
    workflow share one (files carry over, fewer sandboxes are started)."""
    lifetime: int = Field(default=3600, ge=60, le=86_400)
    """AGENTDECK_E2B_LIFETIME: seconds E2B keeps a sandbox alive without hearing from us. agentdeck renews it while
    it is in use and kills it when done; this is the limit if the engine itself disappears."""
    workdir: str = "/home/user/agentdeck"
    """AGENTDECK_E2B_WORKDIR: where task working directories go inside a sandbox (``WORKDIR/WORKFLOW/TASK``)."""
    pause_after: float | None = Field(default=60.0, ge=0)
    """AGENTDECK_E2B_PAUSE_AFTER: seconds a paused task's processes stay frozen before the sandbox itself is paused
    (E2B stops charging for it; it resumes on the next resume). ``none``: never pause the sandbox itself."""
    kill_grace: float = Field(default=3.0, gt=0)
    """AGENTDECK_E2B_KILL_GRACE: seconds between SIGTERM and SIGKILL when a command is stopped."""

    api_key: SecretStr | None = Field(default=None, validation_alias="E2B_API_KEY")
    debug: bool = Field(default=False, validation_alias="E2B_DEBUG")

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise SettingsError(explain_settings(exc, prefix="AGENTDECK_E2B_", secret=frozenset({"api_key"}))) from None

    def missing_key(self) -> str | None:
        """Why E2B cannot be used as configured (no API key outside debug mode), else None."""
        if self.debug or (self.api_key is not None and self.api_key.get_secret_value()):
            return None
        return f"the E2B sandbox needs an API key: {KEY_HINT}"


def e2b_settings() -> E2BSettings:
    """The settings from the environment now (``E2B_DEBUG`` read as the SDK reads it: ``true`` or not)."""
    debug = os.environ.get("E2B_DEBUG", "false").lower() == "true"
    return E2BSettings(debug=debug)
