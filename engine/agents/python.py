"""The ``python`` agent: calls ``module:callable`` with the task's context.

Async callables are awaited on the engine's loop. Synchronous ones run in a worker thread so they never block
the loop (the roadmap's compatibility wrapper); they can call ``ctx.step_sync()`` at step boundaries so pause
holds them and cancel stops them. A callable taking no parameters is called without the context.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from engine.agents.base import Agent, TaskContext
from engine.errors import AgentUnavailable
from engine.spec import AgentSpec


def import_callable(path: str) -> Callable[..., Any]:
    """Resolve ``"package.module:attribute"`` to a callable; raises ``AgentUnavailable`` with the reason."""
    target = import_object(path)
    if not callable(target):
        raise AgentUnavailable(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def import_object(path: str) -> Any:
    """Resolve ``"package.module:attribute"`` to whatever it names; raises ``AgentUnavailable`` with the reason."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise AgentUnavailable(f"{path!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentUnavailable(f"cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise AgentUnavailable(f"{module_name!r} has no attribute {attribute!r}") from exc
    return target


class PythonAgent(Agent):
    kind: ClassVar[str] = "python"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        if not spec.callable:
            raise AgentUnavailable(f"agent {spec.name!r} of kind python needs 'callable: module:function'")
        self.function = import_callable(spec.callable)
        try:
            self._takes_context = bool(inspect.signature(self.function).parameters)
        except (TypeError, ValueError):
            self._takes_context = True

    async def run(self, ctx: TaskContext) -> Any:
        args = (ctx,) if self._takes_context else ()
        if inspect.iscoroutinefunction(self.function):
            return await self.function(*args)
        try:
            result = await asyncio.to_thread(self.function, *args)
        except asyncio.CancelledError:
            ctx.cancelled.set()  # the thread stops at its next ctx.step_sync()
            raise
        if inspect.isawaitable(result):
            return await result
        return result
