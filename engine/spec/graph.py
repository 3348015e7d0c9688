"""Whole-workflow checks: agents and dependencies that exist, unique ids, no cycles.

Kept apart from the models so the YAML loader can run the same checks on the parts of a broken file that did
validate, and report graph problems together with field problems.

Everything here is linear in tasks + dependencies (the checks of 50,000 tasks take ~0.3 s): cycles are
found with Tarjan's strongly connected components, each named by a breadth-first search inside its own
component, and "did you mean" hints share a bounded budget so a file full of typos cannot make them quadratic.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from engine.spec.errors import SpecError, clip

# How many candidate words "did you mean" may compare, in all, per validation. One hint over 50,000 task ids
# costs ~0.2 s; the first hints are the useful ones, so later ones are simply left out once this is spent.
_SUGGESTION_BUDGET = 200_000
# At most this many names are listed in "(defined agents: ...)".
_MAX_LISTED = 10
# Longer cycles are shown cut short: a 50,000-task cycle would otherwise be a 500 KB message.
_MAX_CYCLE_SHOWN = 12
# Nobody mistypes a name this long; comparing megabyte-long names would only cost time.
_LONGEST_SUGGESTED = 100


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class TaskLike(Protocol):
    """What the graph check reads of a task (``engine.spec.models.TaskSpec``; a protocol, so models may import
    this module without a cycle)."""

    @property
    def id(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def run(self) -> str | None: ...
    @property
    def depends_on(self) -> list[str]: ...
    @property
    def line(self) -> int | None: ...
    def line_of(self, key: str) -> int | None: ...


class AgentLike(Protocol):
    """What the graph check reads of an agent (``engine.spec.models.AgentSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...


class _Suggester:
    """`suggestion` with a budget of comparisons shared by every hint of one validation."""

    def __init__(self, budget: int = _SUGGESTION_BUDGET) -> None:
        self.budget = budget

    def __call__(self, word: str, choices: Sequence[str], exclude: str | None = None) -> str:
        if len(choices) > self.budget or len(word) > _LONGEST_SUGGESTED:
            return ""
        self.budget -= len(choices)
        close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
        close = [choice for choice in close if choice != exclude and len(choice) <= _LONGEST_SUGGESTED]
        return f" (did you mean '{close[0]}'?)" if close else ""


def graph_errors(
    tasks: Sequence[TaskLike],
    agents: Mapping[str, AgentLike],
    *,
    path: str | None,
    other_task_ids: Collection[str] = (),
    other_agent_names: Collection[str] = (),
) -> list[SpecError]:
    """Every graph problem among ``tasks``.

    Args:
        tasks: Tasks in file order.
        agents: Agents by name.
        path: File for the messages.
        other_task_ids: Ids of tasks that exist but failed validation: depending on them is not an error.
        other_agent_names: Names of agents that exist but failed validation: using them is not an error.
    """
    errors: list[SpecError] = []
    suggest = _Suggester()

    def error(message: str, line: int | None) -> None:
        errors.append(SpecError(message, path=path, line=line))

    for key, named in agents.items():
        if named.name != key:
            error(f"agent '{clip(key)}' is named '{clip(named.name)}'; the key and the name must match", None)

    first_by_id: dict[str, TaskLike] = {}
    for task in tasks:
        if task.id in first_by_id:
            first_line = first_by_id[task.id].line
            where = f" (first defined at line {first_line})" if first_line is not None else ""
            error(f"duplicate task id '{task.id}'{where}", task.line_of("id"))
        else:
            first_by_id[task.id] = task
    known_ids = set(first_by_id) | set(other_task_ids)
    # Sorted once, lazily: sorting per unknown name would make a file full of typos quadratic.
    sorted_ids: list[str] | None = None
    agent_names: list[str] | None = None

    for task in tasks:
        agent = agents.get(task.agent)
        if agent is None and task.agent not in other_agent_names:
            if agent_names is None:
                agent_names = sorted(set(agents) | set(other_agent_names))
            hint = suggest(task.agent, agent_names) or _defined_agents(agent_names)
            error(f"task '{task.id}': unknown agent '{clip(task.agent)}'{hint}", task.line_of("agent"))
        elif agent is not None and agent.kind == "shell" and task.run is None:
            error(f"task '{task.id}': run is required because agent '{clip(agent.name)}' is a shell agent", task.line)
        elif agent is not None and agent.kind != "shell" and task.run is not None:
            error(
                f"task '{task.id}': run is only for shell agents; agent '{clip(agent.name)}' is a {agent.kind} agent",
                task.line_of("run"),
            )
        for index, dependency in enumerate(task.depends_on):
            if dependency == task.id:
                error(f"task '{task.id}' depends on itself", task.line_of(f"depends_on[{index}]"))
            elif dependency not in known_ids:
                if sorted_ids is None:
                    sorted_ids = sorted(known_ids)
                hint = suggest(dependency, sorted_ids, exclude=task.id)
                message = f"task '{task.id}' depends on unknown task '{clip(dependency)}'{hint}"
                error(message, task.line_of(f"depends_on[{index}]"))

    dependencies = {task.id: task.depends_on for task in first_by_id.values()}
    for cycle in find_cycles(dependencies, list(first_by_id)):
        error(describe_cycle(cycle), first_by_id[cycle[0]].line)
    return errors


def _defined_agents(names: Sequence[str]) -> str:
    if not names:
        return " (the workflow defines no agents)"
    more = f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return f" (defined agents: {', '.join(clip(name) for name in names[:_MAX_LISTED])}{more})"


def describe_cycle(cycle: Sequence[str]) -> str:
    """``cycle: a -> c -> b -> a``; a long cycle shows its first and last tasks and how many are between."""
    if len(cycle) <= _MAX_CYCLE_SHOWN:
        return "cycle: " + " -> ".join(cycle)
    head, tail = cycle[: _MAX_CYCLE_SHOWN - 3], cycle[-2:]
    hidden = len(cycle) - len(head) - len(tail)
    return "cycle: " + " -> ".join([*head, f"... ({hidden:,} more)", *tail])


def find_cycles(dependencies: Mapping[str, Sequence[str]], order: Sequence[str]) -> list[list[str]]:
    """One cycle per tangle of tasks that wait on each other, each as ``[a, b, c, a]`` (a depends on b ...).

    A tangle is a strongly connected component of more than one task. Its cycle is the shortest one through its
    task that comes first in ``order``, and cycles come in that order. Self-dependencies are left out (they get
    their own message); dependencies on unknown tasks are ignored. O(tasks + dependencies).
    """
    position = {task_id: index for index, task_id in enumerate(order)}
    edges = {
        task_id: [d for d in dict.fromkeys(deps) if d in dependencies and d != task_id]
        for task_id, deps in dependencies.items()
    }
    cycles: list[tuple[int, list[str]]] = []
    for component in strongly_connected(edges):
        if len(component) < 2:
            continue
        start = min(component, key=lambda task_id: position.get(task_id, len(position)))
        members = set(component)
        cycle = _shortest_cycle_through(start, edges, members)
        cycles.append((position.get(start, len(position)), cycle))
    cycles.sort(key=lambda found: found[0])
    return [cycle for _, cycle in cycles]


def strongly_connected(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The strongly connected components of a graph (Tarjan's algorithm, iterative: no recursion limit)."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index_of:
            continue
        # Each frame is a node and the position of the next edge to follow from it.
        frames: list[tuple[str, int]] = [(root, 0)]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while frames:
            node, next_edge = frames[-1]
            targets = edges[node]
            if next_edge < len(targets):
                frames[-1] = (node, next_edge + 1)
                target = targets[next_edge]
                if target not in index_of:
                    index_of[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    frames.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index_of[target])
                continue
            frames.pop()
            if frames:
                parent = frames[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle_through(start: str, edges: Mapping[str, Sequence[str]], members: Collection[str]) -> list[str]:
    """Breadth-first from ``start`` inside its component (a shortest cycle never leaves it) back to ``start``."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in edges[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError("a strongly connected component of two or more tasks has a cycle through each of them")
