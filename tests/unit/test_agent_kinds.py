"""Agent kinds are pluggable: a kind registered with ``register_agent_kind`` validates like a built-in one and
builds the registered agent; an unknown kind still gets its ``file:line`` message, listing what is known now."""

from __future__ import annotations

import textwrap

import pytest

import engine.agents
from engine.agents import AgentUnavailable, build_agent, check_agents, register_agent_kind
from engine.spec import AgentSpec, SpecError, WorkflowSpec, parse_workflow
from engine.spec.kinds import BUILTIN_AGENT_KINDS, agent_kinds
from tests.support.agent_kinds import EchoAgent, registered_echo_kind

ECHO_WORKFLOW = textwrap.dedent("""\
    name: w
    agents:
      greeter: {kind: echo, options: {prefix: "hello "}}
    tasks:
      - {id: greet, agent: greeter, input: {text: world}}
""")


def test_the_spec_and_the_agents_know_the_same_built_in_kinds() -> None:
    assert agent_kinds() == BUILTIN_AGENT_KINDS
    assert tuple(engine.agents._KINDS) == BUILTIN_AGENT_KINDS


def test_an_unregistered_kind_is_refused_at_its_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_workflow(ECHO_WORKFLOW, "wf.yaml")
    assert (
        str(caught.value) == "wf.yaml:3: agent 'greeter': kind must be 'shell', 'python', 'graph' or 'llm', got 'echo'"
    )


def test_a_registered_kind_validates_and_builds_its_agent() -> None:
    with registered_echo_kind():
        spec = parse_workflow(ECHO_WORKFLOW, "wf.yaml")
        agents = check_agents(spec)
        from_python = WorkflowSpec.model_validate(
            {"name": "w", "agents": {"e": {"kind": "echo"}}, "tasks": [{"id": "t", "agent": "e"}]}
        )
        from_python.validate_graph()
    assert spec.agents["greeter"].kind == "echo"
    assert isinstance(agents["greeter"], EchoAgent) and agents["greeter"].prefix == "hello "
    assert from_python.agents["e"].kind == "echo"


def test_an_unknown_kind_lists_the_registered_ones_too() -> None:
    with registered_echo_kind(), pytest.raises(SpecError) as caught:
        parse_workflow(ECHO_WORKFLOW.replace("kind: echo", "kind: ecko"), "wf.yaml")
    assert str(caught.value) == (
        "wf.yaml:3: agent 'greeter': kind must be 'shell', 'python', 'graph', 'llm' or 'echo', got 'ecko'"
    )


def test_a_registered_kind_is_gone_once_its_test_ends() -> None:
    with registered_echo_kind():
        assert "echo" in agent_kinds()
    assert agent_kinds() == BUILTIN_AGENT_KINDS
    with pytest.raises(ValueError, match="must be 'shell', 'python', 'graph' or 'llm', got 'echo'"):
        AgentSpec(name="e", kind="echo")


def test_a_kinds_factory_may_refuse_with_a_reason() -> None:
    with registered_echo_kind():
        spec = AgentSpec(name="e", kind="echo", options={"prefix": 3})
        with pytest.raises(AgentUnavailable, match="option 'prefix' must be a string, got 3"):
            build_agent(spec)


@pytest.mark.parametrize("kind", ["", "two words", "{got}", "-dash", 3])
def test_a_kind_must_be_a_plain_name(kind: object) -> None:
    with pytest.raises(ValueError, match="an agent kind is a letter followed by"):
        register_agent_kind(kind, EchoAgent)  # type: ignore[arg-type]
    assert agent_kinds() == BUILTIN_AGENT_KINDS
