"""Workflow specs: the models the engine runs and the YAML loader that builds them with located errors.

    spec = load_workflow("build.yaml", vars={"TARGET": "api"})   # SpecError on any problem, as path:line: message
    for task_id in spec.topological_order(): ...

Building `WorkflowSpec` in Python and calling `validate_graph()` runs the same checks as the loader.
Hostile files meet limits (`MAX_FILE_BYTES`, `MAX_DEPTH`, `MAX_ALIAS_VALUES`) and get a `SpecError` like any other;
a report lists at most `MAX_PROBLEMS` problems.
"""

from engine.spec._source import MAX_FILE_BYTES
from engine.spec._yaml import MAX_ALIAS_VALUES, MAX_DEPTH
from engine.spec.durations import parse_duration
from engine.spec.errors import SpecError, SpecErrors
from engine.spec.loader import MAX_PROBLEMS, load_workflow, parse_workflow
from engine.spec.models import (
    MAX_RETRY_BACKOFF,
    MAX_TASK_ID_LENGTH,
    AgentKind,
    AgentSpec,
    Defaults,
    FailurePolicy,
    Sandbox,
    TaskSpec,
    WatchSpec,
    WorkflowSpec,
)

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_PROBLEMS",
    "MAX_RETRY_BACKOFF",
    "MAX_TASK_ID_LENGTH",
    "AgentKind",
    "AgentSpec",
    "Defaults",
    "FailurePolicy",
    "Sandbox",
    "SpecError",
    "SpecErrors",
    "TaskSpec",
    "WatchSpec",
    "WorkflowSpec",
    "load_workflow",
    "parse_duration",
    "parse_workflow",
]
