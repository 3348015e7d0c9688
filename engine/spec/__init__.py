"""Workflow specs: the models the engine runs and the YAML loader that builds them with located errors.

    spec = load_workflow("build.yaml", vars={"TARGET": "api"})   # SpecError on any problem, as path:line: message
    for task_id in spec.topological_order(): ...

Building `WorkflowSpec` in Python and calling `validate_graph()` runs the same checks as the loader.
"""

from engine.spec.durations import parse_duration
from engine.spec.errors import SpecError, SpecErrors
from engine.spec.loader import load_workflow, parse_workflow
from engine.spec.models import (
    MAX_RETRY_BACKOFF,
    AgentKind,
    AgentSpec,
    Defaults,
    FailurePolicy,
    Sandbox,
    TaskSpec,
    WorkflowSpec,
)

__all__ = [
    "MAX_RETRY_BACKOFF",
    "AgentKind",
    "AgentSpec",
    "Defaults",
    "FailurePolicy",
    "Sandbox",
    "SpecError",
    "SpecErrors",
    "TaskSpec",
    "WorkflowSpec",
    "load_workflow",
    "parse_duration",
    "parse_workflow",
]
