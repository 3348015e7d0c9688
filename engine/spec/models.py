"""The workflow spec as pydantic models: what the engine runs, whether it came from YAML or from Python.

Field checks (types, ranges, required keys) happen when a model is built. Checks that need the whole workflow
(agents referenced by tasks, dependencies, cycles) happen in `WorkflowSpec.validate_graph`, which the YAML loader
calls too, so a spec built in Python gets exactly the same messages as a file.
"""

from __future__ import annotations

import heapq
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.spec._gc import collector_paused
from engine.spec.durations import DURATION_HINT, parse_duration
from engine.spec.errors import SpecError, raise_if_any, show_value
from engine.spec.graph import describe_cycle, find_cycles, graph_errors
from engine.spec.kinds import agent_kinds, one_of
from engine.spec.watch_expr import WatchSyntaxError, parse_watch

if TYPE_CHECKING:
    from db.models import Task

Sandbox = Literal["local", "e2b", "worker"]
FailurePolicy = Literal["fail_fast", "continue"]

#: Longest wait between two attempts of a task, whatever the initial backoff.
MAX_RETRY_BACKOFF = 30.0
#: Longest task id: ids name directories, and a file name has at most 255 bytes.
MAX_TASK_ID_LENGTH = 128

_TASK_ID = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_REF = re.compile(rf"{_DOTTED}:{_DOTTED}")


def _spec_error(message: str, value: Any = None, field: str | None = None) -> PydanticCustomError:
    """A validation error whose text is ours (``message`` may use ``{got}``); ``field`` pins model-level errors."""
    context: dict[str, Any] = {"got": show_value(value)}
    if field is not None:
        context["field"] = field
    return PydanticCustomError("spec", message, context)


def _count(value: Any) -> Any:
    # pydantic reads true/false as 1/0 for int fields; a YAML `retries: true` is a mistake, not one retry.
    if isinstance(value, bool):
        raise _spec_error("must be an integer, got {got}", value)
    return value


def _duration(value: Any) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (TypeError, ValueError):
        raise _spec_error(f"must be {DURATION_HINT}, got {{got}}", value) from None


def _positive_duration(value: Any) -> Any:
    seconds = _duration(value)
    if seconds is not None and seconds <= 0:
        raise _spec_error("must be a duration above zero, got {got}", value)
    return seconds


def _one_or_many(value: Any) -> Any:
    # `depends_on: prepare` is as clear as `depends_on: [prepare]`.
    return [value] if isinstance(value, str) else value


def _env_values(value: Any) -> Any:
    # `PORT: 8080` and `DEBUG: true` are how people write environments; the process sees strings either way.
    if not isinstance(value, dict):
        return value
    converted: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            converted[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            converted[key] = str(item)
        else:
            converted[key] = item
    return converted


def _known_kind(value: Any) -> Any:
    # Checked against the registry when each spec is validated, not frozen into a Literal at import, so a kind
    # registered with engine.agents.register_agent_kind is accepted.
    kinds = agent_kinds()
    if value not in kinds:
        raise _spec_error(f"must be {one_of(kinds)}, got {{got}}", value)
    return value


def _check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise _spec_error("must be an environment variable name (letters, digits, '_'), got {got}", name)
    return name


Count = Annotated[int, BeforeValidator(_count)]
Duration = Annotated[float, BeforeValidator(_positive_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(_positive_duration)]
EnvName = Annotated[str, BeforeValidator(lambda v: _check_env_name(v) if isinstance(v, str) else v)]
#: An agent's kind: a built-in one (``engine.spec.kinds.BUILTIN_AGENT_KINDS``) or one registered since.
AgentKind = Annotated[str, BeforeValidator(_known_kind)]


class Defaults(BaseModel):
    """Settings every task gets unless it sets its own."""

    model_config = ConfigDict(extra="forbid")

    timeout: Duration = 300.0
    """Seconds one attempt may run (YAML: a number or a duration such as ``"5m"``)."""
    retries: Count = Field(default=0, ge=0)
    """Extra attempts after a failure."""
    sandbox: Sandbox = "local"
    """Where tasks run, if the workflow says; left out, ``AGENTDECK_SANDBOX`` decides (`TaskSpec.effective_sandbox`)."""
    retry_backoff: Annotated[float, BeforeValidator(_duration)] = 1.0
    """Seconds before the first retry; doubles each attempt, never above `MAX_RETRY_BACKOFF`."""

    def backoff_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry); 0 before the first attempt. The engine's retry
        waits exactly this."""
        if attempt <= 1:
            return 0.0
        return min(self.retry_backoff * 2.0 ** (attempt - 2), MAX_RETRY_BACKOFF)


class AgentSpec(BaseModel):
    """An agent tasks can run on. In YAML the key under ``agents:`` is its name."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: AgentKind
    concurrency: Count | None = Field(default=None, ge=1)
    """Tasks of this agent running at once (``None``: only the workflow's limit applies)."""
    callable: str | None = None
    """python agents: ``"module:attr"`` of an async or plain function."""
    graph: str | None = None
    """graph agents: ``"module:attr"`` of a compiled LangGraph graph or a factory returning one."""
    model: str | None = None
    """llm agents: ``"provider:model"``; when unset the engine falls back to ``AGENTDECK_MODEL``."""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callable", "graph")
    @classmethod
    def _import_ref(cls, value: str | None) -> str | None:
        if value is not None and not _IMPORT_REF.fullmatch(value):
            raise _spec_error('must look like "module:attr", got {got}', value)
        return value

    @model_validator(mode="after")
    def _fields_match_kind(self) -> AgentSpec:
        owners = {"callable": "python", "graph": "graph", "model": "llm"}
        for field, kind in owners.items():
            if getattr(self, field) is not None and self.kind != kind:
                raise _spec_error(f"is only for {kind} agents; this agent is kind '{self.kind}'", field=field)
        for field, kind in (("callable", "python"), ("graph", "graph")):
            if self.kind == kind and getattr(self, field) is None:
                raise _spec_error(f'is required for {kind} agents ("module:attr")', field=field)
        return self


def _watch_entries(value: Any) -> Any:
    # `watch: cost_usd > 1` is as clear as a list of one; an entry is an expression or {when: EXPR, name: ...}.
    entries = [value] if isinstance(value, str | dict) else value
    if isinstance(entries, list):
        return [{"when": entry} if isinstance(entry, str) else entry for entry in entries]
    return entries


class WatchSpec(BaseModel):
    """A watchpoint declared in the file: pause the workflow when ``when`` holds (``engine.spec.watch_expr``)."""

    model_config = ConfigDict(extra="forbid")

    when: str
    name: str | None = Field(default=None, min_length=1)

    @field_validator("when")
    @classmethod
    def _expression(cls, value: str) -> str:
        try:
            parse_watch(value)
        except WatchSyntaxError as exc:
            raise _spec_error(f"is not a valid watch expression: {exc}", value) from None
        return value


Watches = Annotated[list[WatchSpec], BeforeValidator(_watch_entries)]


class TaskSpec(BaseModel):
    """One unit of work: an agent, its input, and the tasks whose outputs it waits for."""

    model_config = ConfigDict(extra="forbid")

    id: str
    agent: str
    input: dict[str, Any] = Field(default_factory=dict)
    run: str | None = Field(default=None, min_length=1)
    """The command, for shell agents only."""
    depends_on: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(default_factory=list)
    timeout: OptionalDuration = None
    retries: Count | None = Field(default=None, ge=0)
    sandbox: Sandbox | None = None
    env: Annotated[dict[EnvName, str], BeforeValidator(_env_values)] = Field(default_factory=dict)
    secrets: list[EnvName] = Field(default_factory=list)
    """Environment variables passed through to the task and redacted from its output."""
    network: bool = False
    watch: Watches = Field(default_factory=list)
    """Watchpoints over this task's events only."""
    line: int | None = None
    """Line of the task in its file, for messages; not part of equality."""

    # Line of each key's value ("agent", "depends_on", "depends_on[1]", ...), filled by the YAML loader.
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # An id names the task's working directory (state.db.work/WORKFLOW/TASK) and is typed after --task.
        if not _TASK_ID.fullmatch(value):
            raise _spec_error("must use only letters, digits, '_', '.' and '-', got {got}", value)
        if value in (".", ".."):
            raise _spec_error("must not be '.' or '..' (an id names the task's working directory), got {got}", value)
        if value.startswith("-"):
            raise _spec_error("must not start with '-' (it would read as an option after --task), got {got}", value)
        if len(value) > MAX_TASK_ID_LENGTH:
            raise _spec_error(f"must be at most {MAX_TASK_ID_LENGTH} characters, got {{got}}", value)
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskSpec):
            return NotImplemented
        return self.model_dump(exclude={"line"}) == other.model_dump(exclude={"line"})

    def line_of(self, key: str) -> int | None:
        """The line where ``key`` (``"agent"``, ``"depends_on[0]"``) is written, else the task's own line."""
        if key in self._lines:
            return self._lines[key]
        if "[" in key:
            return self.line_of(key.split("[", 1)[0])
        return self.line

    def effective_timeout(self, defaults: Defaults) -> float:
        return self.timeout if self.timeout is not None else defaults.timeout

    def effective_retries(self, defaults: Defaults) -> int:
        return self.retries if self.retries is not None else defaults.retries

    def effective_sandbox(self, defaults: Defaults, fallback: Sandbox) -> Sandbox:
        """Where this task runs: its own ``sandbox``, else the workflow's ``defaults.sandbox`` if the workflow set
        it, else ``fallback`` (the engine passes ``AGENTDECK_SANDBOX``), so a file that names a sandbox gets it on
        every machine and one that does not follows the machine's setting."""
        if self.sandbox is not None:
            return self.sandbox
        return defaults.sandbox if "sandbox" in defaults.model_fields_set else fallback

    def max_attempts(self, defaults: Defaults) -> int:
        return 1 + self.effective_retries(defaults)


class _TaskIndex:
    """Tasks by id for `WorkflowSpec.task`: callers look tasks up once per task, so a scan each time was quadratic.

    Rebuilt when the task list is replaced, changes length, or no longer holds what it maps to. It is a cache,
    so it never makes two specs unequal (pydantic compares private attributes).
    """

    def __init__(self) -> None:
        self._of: list[TaskSpec] | None = None
        self._size = 0
        self._tasks: dict[str, TaskSpec] = {}

    def get(self, tasks: list[TaskSpec], task_id: str) -> TaskSpec | None:
        found = self._tasks.get(task_id) if self._of is tasks and self._size == len(tasks) else None
        if found is None or found.id != task_id:
            self._of, self._size, self._tasks = tasks, len(tasks), {}
            for task in tasks:
                self._tasks.setdefault(task.id, task)
            found = self._tasks.get(task_id)
        return found

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TaskIndex)

    __hash__ = None  # type: ignore[assignment]


class WorkflowSpec(BaseModel):
    """A whole workflow: settings, agents by name, tasks in file order."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    concurrency: Count = Field(default=8, ge=1)
    failure_policy: FailurePolicy = "fail_fast"
    defaults: Defaults = Field(default_factory=Defaults)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    tasks: list[TaskSpec] = Field(min_length=1)
    watch: Watches = Field(default_factory=list)
    """Watchpoints over the whole workflow's events."""
    source: str | None = None
    """The file the spec was read from."""

    _by_id: _TaskIndex = PrivateAttr(default_factory=_TaskIndex)

    @model_validator(mode="before")
    @classmethod
    def _agent_names_from_keys(cls, data: Any) -> Any:
        # Lets Python callers write agents={"builder": {"kind": "shell"}} as YAML does.
        if isinstance(data, dict) and isinstance(data.get("agents"), dict):
            agents = {
                key: {"name": key, **value} if isinstance(value, dict) and "name" not in value else value
                for key, value in data["agents"].items()
            }
            data = {**data, "agents": agents}
        return data

    def task_rows(self, workflow_id: str) -> list[Task]:
        """A new run's task rows, pending, in file order (a submitted workflow's, and a diverged one's)."""
        from db.models import Task

        return [
            Task(
                workflow=workflow_id,
                key=t.id,
                agent=t.agent,
                depends_on=list(t.depends_on),
                input=dict(t.input),
                max_attempts=t.max_attempts(self.defaults),
            )
            for t in self.tasks
        ]

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id (the first, if ids repeat in a spec that has not been validated).

        Raises:
            KeyError: No such task.
        """
        found = self._by_id.get(self.tasks, task_id)
        if found is None:
            raise KeyError(f"no task {task_id!r} in workflow {self.name!r}")
        return found

    def upstream(self, task_id: str) -> list[str]:
        """The tasks this task depends on directly, in the order it lists them."""
        return list(self.task(task_id).depends_on)

    def downstream(self, task_id: str) -> set[str]:
        """Every task that depends on this one, directly or through others (not the task itself). O(V + E)."""
        self.task(task_id)
        dependents: dict[str, list[str]] = {}
        for task in self.tasks:
            for dependency in task.depends_on:
                dependents.setdefault(dependency, []).append(task.id)
        found: set[str] = set()
        pending = [task_id]
        while pending:
            for dependent in dependents.get(pending.pop(), ()):
                if dependent not in found and dependent != task_id:
                    found.add(dependent)
                    pending.append(dependent)
        return found

    def topological_order(self) -> list[str]:
        """Task ids so that every task comes after its dependencies; ties keep file order.

        Raises:
            SpecError: The tasks form a cycle.
        """
        with collector_paused():
            return self._topological_order()

    def _topological_order(self) -> list[str]:
        position = {task.id: index for index, task in enumerate(self.tasks)}
        waiting_on = {task.id: {d for d in task.depends_on if d in position and d != task.id} for task in self.tasks}
        dependents: dict[str, list[str]] = {task_id: [] for task_id in position}
        for task_id, dependencies in waiting_on.items():
            for dependency in dependencies:
                dependents[dependency].append(task_id)
        ready = [(position[task_id], task_id) for task_id, deps in waiting_on.items() if not deps]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, task_id = heapq.heappop(ready)
            order.append(task_id)
            for dependent in dependents[task_id]:
                waiting_on[dependent].discard(task_id)
                if not waiting_on[dependent]:
                    heapq.heappush(ready, (position[dependent], dependent))
        if len(order) < len(position):
            cycle = find_cycles({t.id: t.depends_on for t in self.tasks}, list(position))[0]
            raise SpecError(describe_cycle(cycle), path=self.source, line=self.task(cycle[0]).line)
        return order

    def validate_graph(self) -> None:
        """Check what single models cannot: agents and dependencies exist, ids are unique, no cycles.

        Raises:
            SpecError: One problem (a `SpecErrors` when there are several), located when the spec came from a file.
        """
        with collector_paused():
            errors = graph_errors(self.tasks, self.agents, path=self.source)
        raise_if_any(errors)
