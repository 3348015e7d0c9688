"""Errors the engine raises. ``ControlError`` is a user mistake (exit 2); ``TaskFailed`` ends one attempt."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for engine errors."""


class ControlError(EngineError):
    """A control cannot be applied (unknown workflow, wrong state, unknown task or checkpoint)."""


class TaskFailed(EngineError):
    """One attempt of a task failed; the coordinator retries it if attempts remain."""


class AgentUnavailable(EngineError):
    """An agent cannot be built (bad callable path, a kind that needs an optional extra)."""
