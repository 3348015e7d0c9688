"""A real, tiny agent kind for the tests of ``register_agent_kind``, and a way to register it for one test only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import engine.agents
from engine.agents import Agent, AgentUnavailable, TaskContext, register_agent_kind
from engine.spec import AgentSpec, kinds


class EchoAgent(Agent):
    """Says its task's ``text`` input back after the agent's ``prefix`` option, in its pane and as its output."""

    kind: ClassVar[str] = "echo"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        prefix = spec.options.get("prefix", "")
        if not isinstance(prefix, str):
            raise AgentUnavailable(f"option 'prefix' must be a string, got {prefix!r}")
        self.prefix = prefix

    async def run(self, ctx: TaskContext) -> Any:
        await ctx.step()  # a step boundary, where pause and cancel reach it like any agent
        said = f"{self.prefix}{ctx.input.get('text', '')}"
        ctx.log(said)
        return {"said": said, "upstream": sorted(ctx.upstream)}


@contextmanager
def registered_echo_kind() -> Iterator[None]:
    """``echo`` registered for the ``with`` block; the registry is as before afterwards, so other tests in the same
    worker see only the built-in kinds (their messages list them)."""
    names, factories = list(kinds._kinds), dict(engine.agents._KINDS)
    register_agent_kind("echo", EchoAgent)
    try:
        yield
    finally:
        kinds._kinds[:] = names
        engine.agents._KINDS.clear()
        engine.agents._KINDS.update(factories)
