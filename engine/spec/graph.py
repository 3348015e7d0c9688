"""Whole-workflow checks: agents and dependencies that exist, unique ids, no cycles.

Kept apart from the models so the YAML loader can run the same checks on the parts of a broken file that did
validate, and report graph problems together with field problems.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from engine.spec.errors import SpecError

if TYPE_CHECKING:
    from engine.spec.models import AgentSpec, TaskSpec


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def graph_errors(
    tasks: Sequence[TaskSpec],
    agents: Mapping[str, AgentSpec],
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

    def error(message: str, line: int | None) -> None:
        errors.append(SpecError(message, path=path, line=line))

    for key, named in agents.items():
        if named.name != key:
            error(f"agent '{key}' is named '{named.name}'; the key and the name must match", None)

    first_by_id: dict[str, TaskSpec] = {}
    for task in tasks:
        if task.id in first_by_id:
            first_line = first_by_id[task.id].line
            where = f" (first defined at line {first_line})" if first_line is not None else ""
            error(f"duplicate task id '{task.id}'{where}", task.line_of("id"))
        else:
            first_by_id[task.id] = task
    known_ids = set(first_by_id) | set(other_task_ids)

    for task in tasks:
        agent = agents.get(task.agent)
        if agent is None and task.agent not in other_agent_names:
            names = sorted(set(agents) | set(other_agent_names))
            hint = suggestion(task.agent, names) or (
                f" (defined agents: {', '.join(names)})" if names else " (the workflow defines no agents)"
            )
            error(f"task '{task.id}': unknown agent '{task.agent}'{hint}", task.line_of("agent"))
        elif agent is not None and agent.kind == "shell" and task.run is None:
            error(f"task '{task.id}': run is required because agent '{agent.name}' is a shell agent", task.line)
        elif agent is not None and agent.kind != "shell" and task.run is not None:
            error(
                f"task '{task.id}': run is only for shell agents; agent '{agent.name}' is a {agent.kind} agent",
                task.line_of("run"),
            )
        for index, dependency in enumerate(task.depends_on):
            line = task.line_of(f"depends_on[{index}]")
            if dependency == task.id:
                error(f"task '{task.id}' depends on itself", line)
            elif dependency not in known_ids:
                hint = suggestion(dependency, sorted(known_ids - {task.id}))
                error(f"task '{task.id}' depends on unknown task '{dependency}'{hint}", line)

    dependencies = {task.id: task.depends_on for task in first_by_id.values()}
    for cycle in find_cycles(dependencies, list(first_by_id)):
        error("cycle: " + " -> ".join(cycle), first_by_id[cycle[0]].line)
    return errors


def find_cycles(dependencies: Mapping[str, Sequence[str]], order: Sequence[str]) -> list[list[str]]:
    """One cycle per tangle of tasks that wait on each other, each as ``[a, b, c, a]`` (a depends on b ...).

    Each cycle starts at its task that comes first in ``order``; self-dependencies are left out (they get their
    own message). Dependencies on unknown tasks are ignored.
    """
    edges = {task_id: [d for d in deps if d in dependencies and d != task_id] for task_id, deps in dependencies.items()}
    reported: set[str] = set()
    cycles: list[list[str]] = []
    for start in order:
        if start in reported:
            continue
        cycle = _shortest_cycle_through(start, edges)
        if cycle is None:
            continue
        cycles.append(cycle)
        # Everything in the same strongly connected part would only report the same tangle again.
        reported |= _reachable(start, edges) & _reachable(start, _reversed(edges))
    return cycles


def _shortest_cycle_through(start: str, edges: Mapping[str, Sequence[str]]) -> list[str] | None:
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
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def _reachable(start: str, edges: Mapping[str, Sequence[str]]) -> set[str]:
    seen = {start}
    pending = [start]
    while pending:
        for nxt in edges.get(pending.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


def _reversed(edges: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    flipped: dict[str, list[str]] = {node: [] for node in edges}
    for node, targets in edges.items():
        for target in targets:
            flipped[target].append(node)
    return flipped
