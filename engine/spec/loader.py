"""Read workflow YAML into a `WorkflowSpec`, reporting every problem in the file with its line.

`engine.spec._source` reads the file (regular files only, bounded, UTF-8) and `engine.spec._yaml` parses it into
values that know their lines, with limits on nesting and aliases. Validation itself is pydantic's; this module
maps each pydantic error location back to a line and rewrites the message in the file's terms. Every step is
linear in the size of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from engine.spec._gc import collector_paused
from engine.spec._source import read_text
from engine.spec._yaml import BlockStr, LocMap, LocSeq, compose
from engine.spec.errors import SpecError, clip, raise_if_any, show_value
from engine.spec.graph import graph_errors, suggestion
from engine.spec.models import AgentSpec, Defaults, TaskSpec, WorkflowSpec

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_VARIABLE = re.compile(r"\s*vars\.([A-Za-z_][A-Za-z0-9_-]*)\s*")

Loc = tuple[int | str, ...]

# Keys a YAML mapping may use, per kind of mapping. Model fields the loader fills itself (a task's line, an agent's
# name, the workflow's source file) are not among them.
_ALLOWED_KEYS: dict[str, list[str]] = {
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


def load_workflow(path: str | Path, vars: Mapping[str, str] | None = None) -> WorkflowSpec:
    """Read and validate the workflow file at ``path``; ``vars`` fill ``${{ vars.KEY }}``.

    Raises:
        SpecError: The file cannot be read (or is not a regular file, or is over the size limit), or what it says
            is wrong (`SpecErrors` when several things are).
    """
    source = str(path)
    text = read_text(source)
    return parse_workflow(text, source, vars)


def parse_workflow(text: str, path: str = "<string>", vars: Mapping[str, str] | None = None) -> WorkflowSpec:
    """Validate workflow YAML given as text; ``path`` only names it in messages and `WorkflowSpec.source`.

    Raises:
        SpecError: What is wrong, with its line (`SpecErrors`, sorted by line, when several things are).
    """
    with collector_paused():
        root = compose(text, path)
        if root is None:
            raise SpecError("the file is empty; a workflow needs at least 'name' and 'tasks'", path=path, line=1)
        if not isinstance(root, LocMap):
            got = show_value(root)
            raise SpecError(f"the top level must be a mapping with 'name' and 'tasks', got {got}", path=path, line=1)
        return _Loader(root, path, vars or {}).load()


class _Loader:
    """One parse: the YAML tree (for lines), the problems found so far, and the lines variables spoiled."""

    def __init__(self, root: LocMap, path: str, variables: Mapping[str, str]) -> None:
        self.root = root
        self.path = path
        self.variables = variables
        self.errors: list[SpecError] = []
        self.variable_errors: list[SpecError] = []
        # A value whose ${{ }} could not be filled also fails other checks (an integer field, an agent name); only
        # the variable error is news, so other problems on the same line wait until the variable is fixed.
        self.spoiled_lines: set[int] = set()

    def load(self) -> WorkflowSpec:
        data = self._plain(self.root, 1)
        self._drop_loader_keys(data)
        tasks = data.get("tasks")
        if isinstance(tasks, list):
            for index, item in enumerate(tasks):
                if isinstance(item, dict):
                    item["line"] = self._locate(("tasks", index))
        spec: WorkflowSpec | None = None
        try:
            spec = WorkflowSpec.model_validate({**data, "source": self.path})
        except ValidationError as exc:
            self.errors.extend(self._from_pydantic(error, data) for error in exc.errors(include_url=False))
            self.errors.extend(self._graph_errors_of_valid_parts(data))
        else:
            for index, task in enumerate(spec.tasks):
                self._attach_lines(task, index)
            self.errors.extend(graph_errors(spec.tasks, spec.agents, path=self.path))
        kept = [error for error in self.errors if error.line not in self.spoiled_lines]
        raise_if_any([*self.variable_errors, *kept])
        assert spec is not None  # no errors means validation succeeded
        return spec

    # -- YAML tree to plain data -------------------------------------------------------------------------------

    def _plain(self, node: Any, line: int) -> Any:
        """Plain dicts, lists and scalars, with ``${{ vars.KEY }}`` filled in every string value.

        Aliases share values in the YAML tree; here each use becomes its own copy (bounded by the alias limit).
        """
        if isinstance(node, LocMap):
            return {key: self._plain(value, _line_in(node, key)) for key, value in node.items()}
        if isinstance(node, LocSeq):
            lines = node.item_lines
            return [self._plain(item, lines[index]) for index, item in enumerate(node)]
        if isinstance(node, str):
            if "${{" not in node:
                return str(node)
            return self._fill_variables(str(node), line, block=isinstance(node, BlockStr))
        return node  # None, booleans and numbers

    def _fill_variables(self, text: str, line: int, *, block: bool) -> str:
        def fill(match: re.Match[str]) -> str:
            # In a `|` block the text starts on the line after the key, and keeps its newlines.
            at = line + 1 + text.count("\n", 0, match.start()) if block else line
            variable = _VARIABLE.fullmatch(match.group(1))
            if variable is not None and variable.group(1) in self.variables:
                return self.variables[variable.group(1)]
            if variable is None:
                message = f"unsupported expression '{clip(match.group(0))}'; only ${{{{ vars.NAME }}}} is supported"
            else:
                name = variable.group(1)
                message = f"undefined variable '{name}': pass --var {name}=VALUE"
            self.variable_errors.append(SpecError(message, path=self.path, line=at))
            self.spoiled_lines.update({line, at})
            return match.group(0)

        return _EXPRESSION.sub(fill, text)

    def _drop_loader_keys(self, data: dict[str, Any]) -> None:
        """Refuse, as unknown, keys naming fields the loader fills itself."""
        if "source" in data:
            self._unknown_key(("source",), "top", "")
            del data["source"]
        agents = data.get("agents")
        if isinstance(agents, dict):
            for name, agent in agents.items():
                if isinstance(agent, dict) and "name" in agent:
                    self._unknown_key(("agents", name, "name"), "agent", f"agent '{clip(name)}'")
                    del agent["name"]
        tasks = data.get("tasks")
        if isinstance(tasks, list):
            for index, task in enumerate(tasks):
                if isinstance(task, dict) and "line" in task:
                    self._unknown_key(("tasks", index, "line"), "task", _task_label(task, index))
                    del task["line"]

    def _unknown_key(self, loc: Loc, kind: str, label: str) -> None:
        self.errors.append(
            SpecError(_unknown_key_message(kind, label, str(loc[-1])), path=self.path, line=self._locate(loc, key=True))
        )

    # -- pydantic errors to located messages ---------------------------------------------------------------------

    def _from_pydantic(self, error: ErrorDetails, data: dict[str, Any]) -> SpecError:
        loc: Loc = tuple(error["loc"])
        context = error.get("ctx") or {}
        if "field" in context:  # a model-level check about one field
            loc = (*loc, context["field"])
        kind, label, rest = _context_of(loc, data)
        kind_of_error = error["type"]
        if kind_of_error == "extra_forbidden":
            message = _unknown_key_message(kind, label, str(loc[-1]))
            return SpecError(message, path=self.path, line=self._locate(loc, key=True))
        if kind_of_error == "missing":
            where = "top-level key" if kind == "top" else "key"
            message = f"missing required {where} '{loc[-1]}'"
            return SpecError(f"{label}: {message}" if label else message, path=self.path, line=self._locate(loc))
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
        field = _field_label(rest)
        message = f"{label}: {field} {problem}" if label and field else f"{label or field} {problem}"
        has_field = "field" in context
        return SpecError(message, path=self.path, line=self._locate(loc, key=has_field))

    def _graph_errors_of_valid_parts(self, data: dict[str, Any]) -> list[SpecError]:
        """Graph checks over the agents and tasks that did validate, when some did not."""
        agents: dict[str, AgentSpec] = {}
        broken_agents: set[str] = set()
        raw_agents = data.get("agents", {})
        raw_tasks = data.get("tasks")
        if not isinstance(raw_agents, dict) or not isinstance(raw_tasks, list):
            return []
        for name, raw in raw_agents.items():
            agent = _valid(AgentSpec, {**raw, "name": name}) if isinstance(raw, dict) else None
            if isinstance(agent, AgentSpec):
                agents[name] = agent
            else:
                broken_agents.add(name)
        tasks: list[TaskSpec] = []
        broken_ids: set[str] = set()
        for index, raw in enumerate(raw_tasks):
            task = _valid(TaskSpec, raw)
            if isinstance(task, TaskSpec):
                self._attach_lines(task, index)
                tasks.append(task)
            elif isinstance(raw, dict) and isinstance(raw.get("id"), str):
                broken_ids.add(raw["id"])
        return graph_errors(tasks, agents, path=self.path, other_task_ids=broken_ids, other_agent_names=broken_agents)

    # -- lines ---------------------------------------------------------------------------------------------------

    def _attach_lines(self, task: TaskSpec, index: int) -> None:
        node = self.root["tasks"][index]
        lines = {key: _line_in(node, key) for key in node}
        dependencies = node.get("depends_on")
        if isinstance(dependencies, LocSeq):
            for position, line in enumerate(dependencies.item_lines):
                lines[f"depends_on[{position}]"] = line
        task._lines = lines

    def _locate(self, loc: Loc, *, key: bool = False) -> int:
        """The line of what ``loc`` points at: the deepest part of it the file has.

        A scalar is found at its value; a mapping or list at its key (where ``builder:`` is, not its first entry).
        With ``key``, the last part is found at its key even for a scalar (unknown keys, checks about a field).
        """
        node: Any = self.root
        line = 1
        for depth, part in enumerate(loc):
            last = depth == len(loc) - 1
            if isinstance(node, LocMap):
                name = str(part)
                if name not in node:
                    break
                line = node.key_lines[name] if key and last else _line_in(node, name)
                node = node[name]
            elif isinstance(node, LocSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.item_lines[part]
                node = node[part]
            else:
                break
        return line


def _line_in(mapping: LocMap, key: str) -> int:
    """Where a mapping entry is: a nested mapping or list at its key, a scalar at its value."""
    if isinstance(mapping[key], LocMap | LocSeq):
        return mapping.key_lines[key]
    return mapping.value_lines[key]


def _valid(model: type[BaseModel], raw: Any) -> BaseModel | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _task_label(task: Any, index: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"task '{clip(task_id)}'" if isinstance(task_id, str) and task_id else f"task #{index + 1}"


def _context_of(loc: Loc, data: dict[str, Any]) -> tuple[str, str, Loc]:
    """Which mapping an error is in (kind, label for messages) and the location inside it."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks")
        task = tasks[loc[1]] if isinstance(tasks, list) and loc[1] < len(tasks) else None
        return "task", _task_label(task, loc[1]), loc[2:]
    if len(loc) >= 2 and loc[0] == "agents":
        return "agent", f"agent '{clip(str(loc[1]))}'", loc[2:]
    if len(loc) >= 2 and loc[0] == "defaults":
        return "defaults", "defaults", loc[1:]
    return "top", "", loc


def _field_label(loc: Loc) -> str:
    """``("env", "PORT")`` → ``env.PORT``; ``("depends_on", 0)`` → ``depends_on[0]``."""
    if loc[-1:] == ("[key]",):  # pydantic's marker for a bad mapping key: ("env", "bad key", "[key]")
        return f"{_field_label(loc[:-2])} key"
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{clip(str(part))}" if text else clip(str(part))
    return text


def _unknown_key_message(kind: str, label: str, key: str) -> str:
    hint = suggestion(key, _ALLOWED_KEYS[kind]) if len(key) <= 100 else ""
    if kind == "top":
        return f"unknown top-level key '{clip(key)}'{hint}"
    return f"{label}: unknown key '{clip(key)}'{hint}"
