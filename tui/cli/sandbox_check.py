"""Before a run starts: can the sandboxes its tasks ask for be used here?

For E2B that means an API key (``E2B_API_KEY``) and E2B answering with it. Either missing is infrastructure
trouble: one line and exit 3 before the dashboard opens or anything is stored, not a task failing minutes later.
Workflows that run locally pay nothing for this check (the e2b SDK is not even imported).
"""

from __future__ import annotations

import asyncio

from engine.spec import WorkflowSpec
from tui.cli._common import EXIT_INFRA, fail

#: How long E2B may take to answer the check.
CHECK_TIMEOUT_S = 15.0


def uses_e2b(spec: WorkflowSpec) -> bool:
    """Whether any task of ``spec`` runs in an E2B sandbox (its own choice, the file's, or ``AGENTDECK_SANDBOX``)."""
    from engine.settings import EngineSettings

    fallback = EngineSettings().sandbox
    return any(task.effective_sandbox(spec.defaults, fallback) == "e2b" for task in spec.tasks)


def check_sandboxes(spec: WorkflowSpec) -> None:
    """Exit 3 with a hint when the workflow needs E2B and E2B cannot be used (no key, rejected, unreachable)."""
    if not uses_e2b(spec):
        return
    from engine.sandbox.e2b_settings import e2b_settings

    settings = e2b_settings()
    if (problem := settings.missing_key()) is not None:
        fail(problem, EXIT_INFRA)
    if settings.debug:  # a local envd for development: no API to ask
        return
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    problem = asyncio.run(_ask_e2b(key))
    if problem is not None:
        fail(
            problem, EXIT_INFRA, "check the key and the network, or run the tasks locally with AGENTDECK_SANDBOX=local"
        )


async def _ask_e2b(api_key: str | None) -> str | None:
    """Why E2B cannot be used with ``api_key`` (one authenticated listing of at most one sandbox), else None."""
    from e2b import AsyncSandbox

    from engine.sandbox._e2b_pool import describe

    try:
        listing = AsyncSandbox.list(limit=1, api_key=api_key, request_timeout=CHECK_TIMEOUT_S)
        await asyncio.wait_for(listing.next_items(), CHECK_TIMEOUT_S * 2)
    except TimeoutError:
        return f"E2B cannot be used: no answer within {CHECK_TIMEOUT_S * 2:g} s"
    except Exception as exc:
        return f"E2B cannot be used: {describe(exc, api_key)}"
    return None
