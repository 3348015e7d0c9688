"""Agents by kind: ``shell``, ``python``, ``graph`` (a LangGraph graph) and ``llm`` (a ready-made tool-calling
LangGraph agent). The LangGraph kinds are named by import path (``module:Class``, as a python agent names its
callable) and imported on first use: workflows without them never load LangChain, and this package does not
depend on ``engine.graph`` or ``engine.llm``, which build on it.

Other kinds plug in through ``register_agent_kind(kind, factory)``: from then on, workflows in this process may
name the kind (the spec validates it, see ``engine.spec.kinds``) and the engine builds its agents with
``factory``. Register before loading or building the workflow that uses it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from engine.agents.base import Agent, TaskCancelled, TaskContext
from engine.agents.python import PythonAgent, import_callable, import_object
from engine.agents.shell import ShellAgent
from engine.errors import AgentUnavailable
from engine.spec import AgentSpec, WorkflowSpec
from engine.spec.kinds import allow_agent_kind

AgentFactory = Callable[[AgentSpec], Agent]


def _imported(path: str) -> AgentFactory:
    """A factory for the agent class at ``path`` (``module:Class``), imported when the first agent is built."""

    def build(spec: AgentSpec) -> Agent:
        agent_class: AgentFactory = import_object(path)
        return agent_class(spec)

    return build


_KINDS: dict[str, AgentFactory] = {
    "shell": ShellAgent,
    "python": PythonAgent,
    "graph": _imported("engine.graph.agent:GraphAgent"),
    "llm": _imported("engine.llm.agent:LlmAgent"),
}


def register_agent_kind(kind: str, factory: AgentFactory) -> None:
    """Make ``kind`` available to workflows (``agents: {x: {kind: KIND, options: {...}}}``), built by ``factory``.

    ``factory`` gets the agent's `AgentSpec` (its ``options`` hold the kind's own settings) and returns an
    `Agent`; it may raise ``AgentUnavailable`` to say why it cannot. Registering a kind again replaces its factory.

    Raises:
        ValueError: ``kind`` is not a plain name.
    """
    allow_agent_kind(kind)
    _KINDS[kind] = factory


def import_folder_of(spec: WorkflowSpec) -> None:
    """Like a DAGs folder: callables named in a workflow file may live beside it."""
    if spec.source:
        folder = str(Path(spec.source).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def check_agents(spec: WorkflowSpec) -> dict[str, Agent]:
    """Build every agent of ``spec`` (importing its callables); raises ``AgentUnavailable`` naming the agent."""
    import_folder_of(spec)
    agents = {}
    for name, agent in spec.agents.items():
        try:
            agents[name] = build_agent(agent)
        except AgentUnavailable as exc:
            raise AgentUnavailable(f"agent {name!r}: {exc}") from exc
    return agents


def build_agent(spec: AgentSpec) -> Agent:
    """An agent for ``spec``; raises ``AgentUnavailable`` if its kind or callable cannot be had."""
    factory = _KINDS.get(spec.kind)
    if factory is None:
        raise AgentUnavailable(f"unknown agent kind {spec.kind!r}")
    return factory(spec)


__all__ = [
    "Agent",
    "AgentUnavailable",
    "TaskCancelled",
    "TaskContext",
    "build_agent",
    "check_agents",
    "import_callable",
    "import_folder_of",
    "register_agent_kind",
]
