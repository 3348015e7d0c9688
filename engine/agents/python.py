"""The ``python`` agent: calls ``module:callable`` with the task's context.

Async callables are awaited on the engine's loop. Synchronous ones run in a worker thread so they never block
the loop (the roadmap's compatibility wrapper); they can call ``ctx.step_sync()`` at step boundaries so pause
holds them and cancel stops them. A callable taking no parameters is called without the context.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import traceback
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
    except SyntaxError as exc:  # one line naming the file:line, never a traceback (CLI exit 2)
        where = f"{exc.filename}:{exc.lineno}: " if exc.filename else ""
        raise AgentUnavailable(f"{where}cannot import {module_name!r}: {type(exc).__name__}: {exc.msg}") from exc
    except Exception as exc:  # the module raised while being imported
        problem = "; ".join(str(exc).splitlines())
        raise AgentUnavailable(
            f"{_raised_at(exc)}cannot import {module_name!r}: {type(exc).__name__}: {problem}".rstrip(": ")
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise AgentUnavailable(f"{module_name!r} has no attribute {attribute!r}") from exc
    return target


def _raised_at(exc: BaseException) -> str:
    """``file:line: `` of the frame that raised (importlib's own frames left out), or ``""``."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith("<frozen")]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


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
