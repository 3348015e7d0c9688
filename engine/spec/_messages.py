"""What a broken workflow file is told: pydantic's errors rewritten in the file's terms (``task 'build': retries
must be >= 0, got -1``), unknown keys with a *did you mean*, and labels for tasks and agents."""

from __future__ import annotations

from typing import Any

from pydantic_core import ErrorDetails

from engine.spec.errors import clip, show_value
from engine.spec.graph import suggestion
from engine.spec.models import AgentSpec, Defaults, TaskSpec, WorkflowSpec

Loc = tuple[int | str, ...]

# Keys a YAML mapping may use, per kind of mapping. Model fields the loader fills itself (a task's line, an agent's
# name, the workflow's source file) are not among them.
ALLOWED_KEYS: dict[str, list[str]] = {
    "top": [name for name in WorkflowSpec.model_fields if name != "source"],
    "defaults": list(Defaults.model_fields),
    "agent": [name for name in AgentSpec.model_fields if name != "name"],
    "task": [name for name in TaskSpec.model_fields if name != "line"],
}

# What the value must be, per pydantic error type; each is followed by ", got <value>".
_PROBLEMS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing_size": "is too large a number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
}


def describe(error: ErrorDetails, data: dict[str, Any]) -> tuple[str, Loc, bool]:
    """What a pydantic error means in the file's terms: the message, where it points, and whether at a key."""
    loc: Loc = tuple(error["loc"])
    context = error.get("ctx") or {}
    if "field" in context:  # a model-level check about one field
        loc = (*loc, context["field"])
    kind, label, rest = context_of(loc, data)
    kind_of_error = error["type"]
    if kind_of_error == "extra_forbidden":
        return unknown_key_message(kind, label, str(loc[-1])), loc, True
    if kind_of_error == "missing":
        where = "top-level key" if kind == "top" else "key"
        message = f"missing required {where} '{loc[-1]}'"
        return (f"{label}: {message}" if label else message), loc, False
    if kind_of_error == "spec":
        problem = error["msg"]
    elif kind_of_error in _PROBLEMS:
        problem = f"{_PROBLEMS[kind_of_error]}, got {show_value(error['input'])}"
    elif kind_of_error == "literal_error":
        problem = f"must be {context['expected']}, got {show_value(error['input'])}"
    elif kind_of_error in ("greater_than_equal", "greater_than"):
        bound = f">= {context['ge']}" if "ge" in context else f"> {context['gt']}"
        problem = f"must be {bound}, got {show_value(error['input'])}"
    elif kind_of_error in ("too_short", "string_too_short"):
        problem = "must list at least one task" if loc == ("tasks",) else "must not be empty"
    else:
        problem = f"is invalid: {error['msg']}"
    field = field_label(rest)
    message = f"{label}: {field} {problem}" if label and field else f"{label or field} {problem}"
    return message, loc, "field" in context


def task_label(task: Any, index: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"task '{clip(task_id)}'" if isinstance(task_id, str) and task_id else f"task #{index + 1}"


def context_of(loc: Loc, data: dict[str, Any]) -> tuple[str, str, Loc]:
    """Which mapping an error is in (kind, label for messages) and the location inside it."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks")
        task = tasks[loc[1]] if isinstance(tasks, list) and loc[1] < len(tasks) else None
        return "task", task_label(task, loc[1]), loc[2:]
    if len(loc) >= 2 and loc[0] == "agents":
        return "agent", f"agent '{clip(str(loc[1]))}'", loc[2:]
    if len(loc) >= 2 and loc[0] == "defaults":
        return "defaults", "defaults", loc[1:]
    return "top", "", loc


def field_label(loc: Loc) -> str:
    """``("env", "PORT")`` → ``env.PORT``; ``("depends_on", 0)`` → ``depends_on[0]``."""
    if loc[-1:] == ("[key]",):  # pydantic's marker for a bad mapping key: ("env", "bad key", "[key]")
        return f"{field_label(loc[:-2])} key"
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{clip(str(part))}" if text else clip(str(part))
    return text


def unknown_key_message(kind: str, label: str, key: str) -> str:
    hint = suggestion(key, ALLOWED_KEYS[kind]) if len(key) <= 100 else ""
    if kind == "top":
        return f"unknown top-level key '{clip(key)}'{hint}"
    return f"{label}: unknown key '{clip(key)}'{hint}"
