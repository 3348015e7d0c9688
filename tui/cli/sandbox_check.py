"""Before a run starts: can the sandboxes its tasks ask for be used here?

For E2B that means an API key (``E2B_API_KEY``) and E2B answering with it. Either missing is infrastructure
trouble: one line and exit 3 before the dashboard opens or anything is stored, not a task failing minutes later.
Workflows that run locally pay nothing for this check (the e2b SDK is not even imported).
"""

from __future__ import annotations

import asyncio

from engine.spec import WorkflowSpec
from tui.cli._common import EXIT_BAD_INPUT, EXIT_INFRA, fail

#: How long E2B may take to answer the check.
CHECK_TIMEOUT_S = 15.0


def uses(spec: WorkflowSpec, kind: str) -> bool:
    """Whether any task of ``spec`` runs in a ``kind`` sandbox (its own choice, the file's, or
    ``AGENTDECK_SANDBOX``)."""
    from engine.settings import EngineSettings

    fallback = EngineSettings().sandbox
    return any(task.effective_sandbox(spec.defaults, fallback) == kind for task in spec.tasks)


def check_sandboxes(spec: WorkflowSpec, redis: str | None = None) -> None:
    """Exit 2 when the workflow hands commands to workers and no Redis is given; exit 3 with a hint when it needs
    E2B and E2B cannot be used (no key, rejected, unreachable)."""
    if uses(spec, "worker"):
        from engine.settings import EngineSettings

        if not (redis or EngineSettings().redis):
            fail(
                f"workflow {spec.name!r} runs commands on workers (sandbox: worker), which take them from Redis",
                EXIT_BAD_INPUT,
                "give --redis URL (or AGENTDECK_REDIS), and start `agentdeck worker --redis URL` where they run",
            )
    if not uses(spec, "e2b"):
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
