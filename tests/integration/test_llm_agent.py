"""The ``llm`` agent through the engine: a scripted model drives real tools in a real sandbox.

Only the LLM provider is faked (``FakeToolCallingChatModel``, registered under a model name with
``register_chat_model``); LangGraph, the tools, the sandbox's subprocesses and SurrealDB (``mem://``) are real.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from db import connect
from db.models import Event, TaskStatus, WorkflowStatus
from engine.agents import build_agent
from engine.engine import Engine
from engine.errors import AgentUnavailable
from engine.events import output_lines
from engine.llm import register_chat_model
from engine.llm.pricing import PRICES
from engine.spec import AgentSpec, WorkflowSpec
from tests.support.fake_llm import FakeToolCallingChatModel, reply, script

MODEL = "openai:gpt-4o-mini"  # priced in the shipped table
AGENTDECK = str(Path(sys.executable).with_name("agentdeck"))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


@pytest.fixture
def scripted() -> Iterator[Any]:
    """``scripted(model_name, replies)`` registers a fake model for the test and unregisters it after."""
    undo: list[Any] = []

    def register(model_name: str, replies: list[AIMessage]) -> FakeToolCallingChatModel:
        model, unregister = script(model_name, replies)
        undo.append(unregister)
        return model

    yield register
    for unregister in undo:
        unregister()


def workflow(tasks: list[dict[str, Any]], **agent: Any) -> WorkflowSpec:
    agents = {"coder": {"kind": "llm", "model": MODEL, **agent}, "sh": {"kind": "shell"}}
    return WorkflowSpec.model_validate({"name": "llm-test", "agents": agents, "tasks": tasks})


async def run(engine: Engine, spec: WorkflowSpec) -> tuple[str, list[Event]]:
    wf = await engine.submit(spec)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED, await engine.stores.tasks.list(wf)
    await engine.recorder.flush()
    return wf, await engine.stores.events.list(wf)


def tool_results(model: FakeToolCallingChatModel) -> dict[str, str]:
    """What each tool returned, as the model saw it in its last call."""
    return {m.name or "": str(m.content) for m in model.seen[-1] if isinstance(m, ToolMessage)}


def pane_lines(events: list[Event]) -> list[str]:
    return [line for e in events if e.type == "task.output" for line in output_lines(e)]


async def test_the_model_writes_a_file_runs_it_and_answers_with_usage_and_cost_recorded(
    engine: Engine, scripted: Any
) -> None:
    model = scripted(
        MODEL,
        [
            reply(tool=("write_file", {"path": "src/hello.py", "content": "print('hello from agentdeck')\n"}),
                  tokens=(1200, 40)),
            reply(tool=("run_command", {"command": "python3 src/hello.py"}), tokens=(1300, 12)),
            reply("hello.py prints 'hello from agentdeck'.", tokens=(1400, 30), cache_read=1000),
        ],
    )  # fmt: skip
    spec = workflow(
        [
            {"id": "plan", "agent": "sh", "run": 'echo \'::output::{"module": "src/hello.py"}\''},
            {"id": "code", "agent": "coder", "depends_on": ["plan"], "input": {"prompt": "Write and run hello.py"}},
        ]
    )
    wf, events = await run(engine, spec)

    written = engine.workdir_for(wf, "code") / "src" / "hello.py"
    assert written.read_text() == "print('hello from agentdeck')\n"
    results = tool_results(model)
    assert results["run_command"] == "exit code 0\nhello from agentdeck"  # the real output, back to the model
    first = next(m for m in model.seen[0] if isinstance(m, HumanMessage))
    assert "Write and run hello.py" in str(first.content) and '"module": "src/hello.py"' in str(first.content)
    assert model.bound_tools == ["run_command", "read_file", "write_file", "search_memory", "remember"]

    price = PRICES["gpt-4o-mini"]
    costs = [
        1200 * price.input / 1e6 + 40 * price.output / 1e6,
        1300 * price.input / 1e6 + 12 * price.output / 1e6,
        (400 * price.input + 1000 * (price.cache_read or 0) + 30 * price.output) / 1e6,
    ]
    usage = [e for e in events if e.type == "llm.usage"]
    assert [(e.task, e.agent, e.data["model"]) for e in usage] == [("code", "coder", MODEL)] * 3
    assert [(e.data["input_tokens"], e.data["output_tokens"]) for e in usage] == [(1200, 40), (1300, 12), (1400, 30)]
    assert usage[2].data["cache_read_tokens"] == 1000
    assert [e.data["cost_usd"] for e in usage] == pytest.approx(costs)

    task = await engine.stores.tasks.get(wf, "code")
    assert task is not None and task.status is TaskStatus.COMPLETED
    assert task.output["answer"] == "hello.py prints 'hello from agentdeck'."
    summary = task.output["usage"]
    assert (summary["calls"], summary["input_tokens"], summary["output_tokens"]) == (3, 3900, 82)
    assert summary["cost_usd"] == pytest.approx(sum(costs))

    await engine.metrics.flush()
    inputs = await engine.stores.metrics.query("llm_input_tokens", workflow=wf, agent="coder")
    outputs = await engine.stores.metrics.query("llm_output_tokens", workflow=wf, agent="coder")
    dollars = await engine.stores.metrics.query("llm_cost_usd", workflow=wf, agent="coder")
    assert sum(m.value for m in inputs) == 3900 and sum(m.value for m in outputs) == 82
    assert sum(m.value for m in dollars) == pytest.approx(sum(costs))
    assert "$ python3 src/hello.py" in pane_lines(events)


async def test_a_cancelled_run_resumes_mid_conversation_without_asking_the_model_again(
    engine: Engine, scripted: Any
) -> None:
    once = "if [ -f .ran ]; then echo second run; else touch .ran; echo first run; sleep 60; fi"
    model = scripted(
        MODEL, [reply(tool=("run_command", {"command": once}), tokens=(100, 20)), reply("done", tokens=(200, 8))]
    )
    wf = await engine.submit(workflow([{"id": "code", "agent": "coder", "input": {"prompt": "run it"}}]))

    async def command_started() -> bool:
        await engine.recorder.flush()
        return "first run" in pane_lines(await engine.stores.events.list(wf))

    async with asyncio.timeout(30):
        while not await command_started():  # noqa: ASYNC110 - polls the database, which has no event to await
            await asyncio.sleep(0.02)
    await engine.cancel(wf)
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    await engine.resume_workflow(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED

    assert len(model.seen) == 2, "the model was asked again for a step the checkpoint already had"
    assert tool_results(model)["run_command"] == "exit code 0\nsecond run"
    task = await engine.stores.tasks.get(wf, "code")
    assert task is not None and task.output["answer"] == "done"
    usage = task.output["usage"]  # from the checkpointed conversation: the call before the cancel counts too
    assert (usage["calls"], usage["input_tokens"], usage["output_tokens"]) == (2, 300, 28)


async def test_the_conversation_is_a_thread_whose_history_reads_without_the_provider(engine: Engine) -> None:
    made: list[FakeToolCallingChatModel] = []

    def factory(**options: Any) -> FakeToolCallingChatModel:
        made.append(FakeToolCallingChatModel(responses=[reply("hi", tokens=(3, 1))]))
        return made[-1]

    unregister = register_chat_model(MODEL, factory)
    try:
        wf, _ = await run(engine, workflow([{"id": "code", "agent": "coder", "input": {"prompt": "say hi"}}]))
        history = await engine.graph_history(wf, "code")
    finally:
        unregister()
    assert len(made) == 1, "reading the thread's history made a chat model"
    assert [entry.ran for entry in history if entry.ran] == [["model"], ["__start__"]]  # newest first
    assert history[0].values["messages"][-1] == {"type": "ai", "content": "hi"}


async def test_paths_outside_the_working_directory_are_refused_and_the_model_carries_on(
    engine: Engine, scripted: Any
) -> None:
    model = scripted(
        MODEL,
        [
            reply(tool=("write_file", {"path": "../escaped.txt", "content": "x"}), tokens=(10, 1), call_id="a"),
            reply(tool=("read_file", {"path": "/etc/hostname"}), tokens=(10, 1), call_id="b"),
            reply(tool=("read_file", {"path": "missing.txt"}), tokens=(10, 1), call_id="c"),
            reply("I could not write outside my directory.", tokens=(10, 1)),
        ],
    )
    wf, _ = await run(engine, workflow([{"id": "code", "agent": "coder", "input": {"prompt": "escape"}}]))
    said = [str(m.content) for m in model.seen[-1] if isinstance(m, ToolMessage)]
    assert "leads outside the task's working directory" in said[0]
    assert "is absolute" in said[1]
    assert "there is no file 'missing.txt'" in said[2]
    assert not (engine.workdir_for(wf, "code").parent / "escaped.txt").exists()
    task = await engine.stores.tasks.get(wf, "code")
    assert task is not None and task.output["answer"] == "I could not write outside my directory."


async def test_long_command_output_reaches_the_model_as_its_start_and_end(engine: Engine, scripted: Any) -> None:
    model = scripted(
        MODEL,
        [reply(tool=("run_command", {"command": "seq 1 3000; exit 3"}), tokens=(1, 1)), reply("ok", tokens=(1, 1))],
    )
    await run(engine, workflow([{"id": "code", "agent": "coder", "input": {"prompt": "count"}}]))
    result = tool_results(model)["run_command"]
    assert result.startswith("exit code 3\n1\n2\n3\n") and result.endswith("\n2999\n3000")
    assert "lines cut …]" in result and len(result) < 10_000


async def test_an_unpriced_model_counts_tokens_with_a_null_cost_and_says_so_once(engine: Engine, scripted: Any) -> None:
    scripted(
        "openai:gpt-unreleased",
        [reply(tool=("run_command", {"command": "echo hi"}), tokens=(70, 5)), reply("done", tokens=(90, 3))],
    )
    spec = workflow([{"id": "code", "agent": "coder", "input": {"prompt": "hi"}}], model="openai:gpt-unreleased")
    wf, events = await run(engine, spec)
    usage = [e for e in events if e.type == "llm.usage"]
    assert [(e.data["input_tokens"], e.data["output_tokens"], e.data["cost_usd"]) for e in usage] == [
        (70, 5, None),
        (90, 3, None),
    ]
    notes = [line for line in pane_lines(events) if "no price for model" in line]
    assert notes == [
        "no price for model openai:gpt-unreleased: tokens are counted, cost is not "
        "(set options.price or AGENTDECK_PRICES)"
    ]
    task = await engine.stores.tasks.get(wf, "code")
    assert task is not None
    assert task.output["usage"]["input_tokens"] == 160 and task.output["usage"]["cost_usd"] is None
    await engine.metrics.flush()
    assert await engine.stores.metrics.query("llm_cost_usd", workflow=wf) == []
    assert sum(m.value for m in await engine.stores.metrics.query("llm_input_tokens", workflow=wf)) == 160


async def test_an_agent_price_and_tool_subset_apply(engine: Engine, scripted: Any) -> None:
    model = scripted(MODEL, [reply("nothing to do", tokens=(1_000_000, 500_000))])
    spec = workflow(
        [{"id": "code", "agent": "coder", "input": {"task": "summarise", "files": 3}}],
        options={"price": {"input": 2, "output": 4}, "tools": ["read_file"], "system": "Be terse."},
    )
    _, events = await run(engine, spec)
    assert model.bound_tools == ["read_file"]
    assert str(model.seen[0][0].content) == "Be terse."
    assert '"files": 3' in str(model.seen[0][1].content)  # no prompt: the whole input is the message
    assert [e.data["cost_usd"] for e in events if e.type == "llm.usage"] == [pytest.approx(4.0)]


def test_no_model_configured_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTDECK_MODEL", raising=False)
    with pytest.raises(AgentUnavailable, match=r"no model configured.*AGENTDECK_MODEL"):
        build_agent(AgentSpec(name="writer", kind="llm"))


def test_agentdeck_model_is_the_fallback(monkeypatch: pytest.MonkeyPatch, scripted: Any) -> None:
    scripted("openai:gpt-4.1", [reply("ok", tokens=(1, 1))])
    monkeypatch.setenv("AGENTDECK_MODEL", "openai:gpt-4.1")
    agent = build_agent(AgentSpec(name="writer", kind="llm"))
    assert getattr(agent, "model", None) == "openai:gpt-4.1"


def test_a_missing_provider_package_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def without_anthropic(name: str, package: str | None = None) -> Any:
        return None if name == "langchain_anthropic" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_anthropic)
    with pytest.raises(AgentUnavailable, match=r"pip install 'agentdeck\[anthropic\]'"):
        build_agent(AgentSpec(name="writer", kind="llm", model="anthropic:claude-sonnet-4-5"))


def test_validate_exits_2_when_an_llm_agent_has_no_model(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(
        "name: writes\nagents:\n  writer: {kind: llm}\ntasks:\n  - id: draft\n    agent: writer\n"
        "    input: {prompt: hello}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTDECK_MODEL"}
    result = subprocess.run([AGENTDECK, "validate", str(file)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "agent 'writer': no model configured" in result.stderr
    assert "Traceback" not in result.stderr


def test_building_an_llm_agent_loads_no_langchain() -> None:
    """``agentdeck validate`` builds every agent: LangChain (seconds to import) waits until a task runs."""
    check = "\n".join(
        [
            "import sys",
            "from engine.agents import build_agent",
            "from engine.llm import register_chat_model",
            "from engine.spec import AgentSpec",
            f"register_chat_model({MODEL!r}, lambda **options: None)  # no provider package needed",
            f"build_agent(AgentSpec(name='w', kind='llm', model={MODEL!r}, options={{'tools': ['read_file']}}))",
            "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'langgraph'))))",
        ]
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bad_options_are_refused_when_the_agent_is_built(scripted: Any) -> None:
    scripted(MODEL, [])  # the model is available (no provider package needed): only the options are wrong
    with pytest.raises(AgentUnavailable, match="unknown tool 'browse'"):
        build_agent(AgentSpec(name="w", kind="llm", model=MODEL, options={"tools": ["browse"]}))
    with pytest.raises(AgentUnavailable, match=r"options\.price: 'output' is required"):
        build_agent(AgentSpec(name="w", kind="llm", model=MODEL, options={"price": {"input": 1}}))


async def test_the_model_remembers_in_one_task_and_a_later_task_finds_it_by_meaning(
    engine: Engine, scripted: Any
) -> None:
    fact = "The payments service must be deployed before the invoicing service."
    model = scripted(
        MODEL,
        [
            reply(tool=("remember", {"content": fact}), tokens=(100, 10)),
            reply("noted", tokens=(110, 2)),
            reply(tool=("search_memory", {"query": "what has to ship first, payments or invoices?"}), tokens=(120, 9)),
            reply("payments first", tokens=(130, 3)),
        ],
    )
    spec = workflow(
        [
            {"id": "learn", "agent": "coder", "input": {"prompt": "Remember the deploy order"}},
            {"id": "use", "agent": "coder", "depends_on": ["learn"], "input": {"prompt": "What ships first?"}},
        ]
    )
    wf, events = await run(engine, spec)

    found = tool_results(model)["search_memory"]
    assert found.startswith("1. (") and fact in found.splitlines()[0]  # the paraphrase found it first
    memory = (await engine.memory.search(fact, k=1))[0].memory
    assert (memory.workflow, memory.task, memory.agent) == (wf, "learn", "coder")
    assert memory.graph_step is not None and memory.graph_step >= 1  # the LangGraph step that wrote it
    assert [e.task for e in events if e.type == "memory.written"] == ["learn"]
