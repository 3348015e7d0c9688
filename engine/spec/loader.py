"""Read workflow YAML into a `WorkflowSpec`, reporting every problem in the file with its line.

`engine.spec._source` reads the file (regular files only, bounded, UTF-8) and `engine.spec._yaml` parses it into
values that know their lines, with limits on nesting and aliases. Validation itself is pydantic's; this module
maps each pydantic error location back to a line (`engine.spec._messages` words it in the file's terms).

Every step is linear in the size of the file, and so is what a broken file costs: agents and tasks are validated
one at a time, unknown keys are dropped before pydantic sees them, and after `MAX_PROBLEMS` problems the loader
stops looking (a million broken tasks would otherwise build a million error reports, gigabytes of them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.spec._gc import collector_paused
from engine.spec._messages import ALLOWED_KEYS, Loc, describe, task_label, unknown_key_message
from engine.spec._source import read_text
from engine.spec._yaml import BlockStr, LocMap, LocSeq, compose
from engine.spec.errors import SpecError, clip, raise_if_any, show_value
from engine.spec.graph import graph_errors
from engine.spec.models import AgentSpec, TaskSpec, WorkflowSpec

#: Problems reported for one file at most; a file with more gets these and a line saying there are more.
MAX_PROBLEMS = 1000
# Entries a task's env, secrets and depends_on may have (depends_on: a 100,000-task fan-in).
_MAX_ENTRIES = {"env": 10_000, "secrets": 10_000, "depends_on": 100_000}
_VARIABLE = re.compile(r"\s*vars\.([A-Za-z_][A-Za-z0-9_-]*)\s*")
# Stands in for the tasks while the rest of a workflow whose tasks are broken is validated.
_PLACEHOLDER_TASK = TaskSpec(id="placeholder", agent="placeholder")


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
        self.unreported = 0  # problems found past MAX_PROBLEMS
        self.stopped = False  # gave up looking after MAX_PROBLEMS
        # Tasks and agents that had unknown keys: they count as broken (not used by the graph checks), as they did
        # when pydantic refused the keys itself.
        self.had_unknown_keys: set[Loc] = set()
        # A value whose ${{ }} could not be filled also fails other checks (an integer field, an agent name); only
        # the variable error is news, so other problems on the same line wait until the variable is fixed.
        self.spoiled_lines: set[int] = set()

    def load(self) -> WorkflowSpec:
        data = self._plain(self.root, 1)
        self._drop_unknown_keys(data)
        tasks = data.get("tasks")
        if isinstance(tasks, list):
            for index, item in enumerate(tasks):
                if isinstance(item, dict):
                    item["line"] = self._locate(("tasks", index))
        spec = self._validate(data)
        if spec is not None:
            for index, task in enumerate(spec.tasks):
                self._attach_lines(task, index)
            self._report(graph_errors(spec.tasks, spec.agents, path=self.path))
        kept = [error for error in self.errors if error.line not in self.spoiled_lines]
        if self.unreported or self.stopped:
            counted = f"{self.unreported:,} more problems not listed" if self.unreported else "more problems may follow"
            kept.append(SpecError(f"{counted}: stopped after the first {MAX_PROBLEMS:,}", path=self.path))
        raise_if_any([*self.variable_errors, *kept])
        assert spec is not None  # no errors means validation succeeded
        return spec

    def _report(self, errors: list[SpecError]) -> None:
        room = max(0, MAX_PROBLEMS - len(self.errors) - len(self.variable_errors))
        self.errors.extend(errors[:room])
        self.unreported += len(errors) - len(errors[:room])

    @property
    def full(self) -> bool:
        return len(self.errors) + len(self.variable_errors) >= MAX_PROBLEMS

    # -- validation -----------------------------------------------------------------------------------------------

    def _validate(self, data: dict[str, Any]) -> WorkflowSpec | None:
        """The spec, or None when something is wrong (then `errors` say what)."""
        agents, broken_agents = self._valid_agents(data.get("agents"))
        indexed, broken_ids, tasks_broken = self._valid_tasks(data.get("tasks"))
        if self.full:
            self.stopped = True
            return None
        tasks = None if indexed is None else [task for _, task in indexed]
        whole: dict[str, Any] = {**data, "source": self.path}
        if agents is not None:
            whole["agents"] = agents
        if tasks is not None:
            whole["tasks"] = [_PLACEHOLDER_TASK] if tasks_broken and not tasks else tasks
        try:
            spec = WorkflowSpec.model_validate(whole)
        except ValidationError as exc:
            self._report_pydantic(exc, (), data)
            spec = None
        if spec is not None and not (broken_agents or tasks_broken):
            return spec
        if agents is not None and tasks is not None and indexed is not None:  # graph checks of the valid parts
            for index, task in indexed:
                self._attach_lines(task, index)
            errors = graph_errors(
                tasks, agents, path=self.path, other_task_ids=broken_ids, other_agent_names=broken_agents
            )
            self._report(errors)
        return None

    def _valid_agents(self, raw: Any) -> tuple[dict[str, AgentSpec] | None, set[str]]:
        if not isinstance(raw, dict):
            return None, set()
        agents: dict[str, AgentSpec] = {}
        broken: set[str] = set()
        for name, value in raw.items():
            given = {"name": name, **value} if isinstance(value, dict) else value
            agent = self._valid_one(AgentSpec, given, ("agents", name), raw_data={"agents": raw})
            if isinstance(agent, AgentSpec) and ("agents", name) not in self.had_unknown_keys:
                agents[name] = agent
            else:
                broken.add(name)
            if self.full:
                self.stopped = True
                break
        return agents, broken

    def _valid_tasks(self, raw: Any) -> tuple[list[tuple[int, TaskSpec]] | None, set[str], bool]:
        """The valid tasks with their index in the file, ids of broken ones, and whether any was broken."""
        if not isinstance(raw, list):
            return None, set(), False
        tasks: list[tuple[int, TaskSpec]] = []
        broken_ids: set[str] = set()
        any_broken = False
        for index, value in enumerate(raw):
            task = None
            if not self._too_many_entries(value, index):
                task = self._valid_one(TaskSpec, value, ("tasks", index), raw_data={"tasks": raw})
            if isinstance(task, TaskSpec):
                # A task whose only fault is an unknown key still takes part in the graph checks (its id and
                # dependencies are sound), so a cycle through it is reported with the key, not after it is fixed.
                tasks.append((index, task))
                any_broken = any_broken or ("tasks", index) in self.had_unknown_keys
            else:
                any_broken = True
                if isinstance(value, dict) and isinstance(value.get("id"), str):
                    broken_ids.add(value["id"])
            if self.full:
                self.stopped = True
                break
        return tasks, broken_ids, any_broken

    def _too_many_entries(self, task: Any, index: int) -> bool:
        if not isinstance(task, dict):
            return False
        for key, limit in _MAX_ENTRIES.items():
            value = task.get(key)
            if isinstance(value, list | dict) and len(value) > limit:
                message = f"{task_label(task, index)}: {key} has {len(value):,} entries; at most {limit:,} are allowed"
                self._report([SpecError(message, path=self.path, line=self._locate(("tasks", index, key), key=True))])
                return True
        return False

    def _valid_one(self, model: type[BaseModel], value: Any, loc: Loc, raw_data: dict[str, Any]) -> BaseModel | None:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self._report_pydantic(exc, loc, raw_data)
            return None

    def _report_pydantic(self, exc: ValidationError, prefix: Loc, data: dict[str, Any]) -> None:
        errors: list[SpecError] = []
        for error in exc.errors(include_url=False):
            error["loc"] = (*prefix, *error["loc"])
            message, loc, at_key = describe(error, data)
            errors.append(SpecError(message, path=self.path, line=self._locate(loc, key=at_key)))
        self._report(errors)

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
        """Replace each ``${{ ... }}`` (up to the first ``}}`` after it, as a lazy regex would match).

        Done with ``str.find`` rather than a regex: a regex that finds no ``}}`` rescans to the end of the text from
        every ``${{``, which is quadratic in a long value full of them.
        """
        parts: list[str] = []
        position = 0
        at = line + 1 if block else line  # in a `|` block the text starts on the line after the key
        counted = 0
        while True:
            start = text.find("${{", position)
            end = text.find("}}", start + 3) if start >= 0 else -1
            if end < 0:
                parts.append(text[position:])
                return "".join(parts)
            parts.append(text[position:start])
            expression = text[start : end + 2]
            if block:
                at += text.count("\n", counted, start)
                counted = start
            parts.append(self._variable(expression, line, at))
            position = end + 2

    def _variable(self, expression: str, line: int, at: int) -> str:
        variable = _VARIABLE.fullmatch(expression[3:-2])
        if variable is not None and variable.group(1) in self.variables:
            return self.variables[variable.group(1)]
        if variable is None:
            message = f"unsupported expression '{clip(expression)}'; only ${{{{ vars.NAME }}}} is supported"
        else:
            name = variable.group(1)
            message = f"undefined variable '{name}': pass --var {name}=VALUE"
        if self.full:
            self.unreported += 1
        else:
            self.variable_errors.append(SpecError(message, path=self.path, line=at))
        self.spoiled_lines.update({line, at})
        return expression

    def _drop_unknown_keys(self, data: dict[str, Any]) -> None:
        """Refuse unknown keys here, before pydantic, so that a million of them cost a million checks, not a million
        error reports; keys naming fields the loader fills itself (an agent's name, a task's line) are unknown."""
        self._drop_unknown(data, (), "top", "")
        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            self._drop_unknown(defaults, ("defaults",), "defaults", "defaults")
        agents = data.get("agents")
        if isinstance(agents, dict):
            for name, agent in agents.items():
                if isinstance(agent, dict):
                    self._drop_unknown(agent, ("agents", name), "agent", f"agent '{clip(name)}'")
        tasks = data.get("tasks")
        if isinstance(tasks, list):
            for index, task in enumerate(tasks):
                if isinstance(task, dict):
                    self._drop_unknown(task, ("tasks", index), "task", task_label(task, index))

    def _drop_unknown(self, mapping: dict[str, Any], loc: Loc, kind: str, label: str) -> None:
        allowed = ALLOWED_KEYS[kind]
        unknown = [key for key in mapping if key not in allowed]
        errors = []
        for key in unknown[: MAX_PROBLEMS + 1]:
            message = unknown_key_message(kind, label, key)
            errors.append(SpecError(message, path=self.path, line=self._locate((*loc, key), key=True)))
        self._report(errors)
        self.unreported += max(0, len(unknown) - len(errors))
        for key in unknown:
            del mapping[key]
        if unknown:
            self.had_unknown_keys.add(loc)

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
