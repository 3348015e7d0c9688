"""Graph agents through the engine: real LangGraph graphs, checkpointed in real SurrealDB (mem://).

Node executions are counted (``graphs.RUNS``), so each test can say exactly which nodes ran again after a
cancel, a pause, a fork, a retry or a rollback — the complaints we answer: "resume turns into a replay",
"re-run from here re-runs everything", "cancel doesn't stop the graph".
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import ApprovalStatus, Event, TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.events import output_lines
from engine.spec import WorkflowSpec
from tests.conftest import server_settings
from tests.integration.workflows import graphs
from tests.support.polling import until

GRAPHS = "tests.integration.workflows.graphs"


def spec(graph: str, **task: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "graph",
            "agents": {"g": {"kind": "graph", "graph": f"{GRAPHS}:{graph}"}},
            "tasks": [{"id": "build", "agent": "g", "input": {"topic": "parser"}, **task}],
        }
    )


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    graphs.reset()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


async def events_of(engine: Engine, workflow: str, prefix: str = "") -> list[Event]:
    await engine.recorder.flush()
    return [e for e in await engine.stores.events.list(workflow) if e.type.startswith(prefix)]


async def status_becomes(engine: Engine, workflow: str, status: TaskStatus, limit_s: float = 30) -> None:
    async def status_is() -> bool:
        return (await engine.stores.tasks.get(workflow, "build")).status is status  # type: ignore[union-attr]

    await until(status_is, f"task build of {workflow} to become {status.value}", limit_s=limit_s)


def hold(node: str) -> asyncio.Event:
    graphs.GATES[node] = asyncio.Event()
    graphs.STARTED[node] = asyncio.Event()
    return graphs.GATES[node]


async def test_a_graph_runs_as_a_task_node_by_node(engine: Engine) -> None:
    wf = await engine.submit(spec("linear"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output == {
        "topic": "parser", "log": ["plan", "write", "check", "report"], "count": 4
    }  # fmt: skip
    nodes = await engine.stores.graph_nodes.list(wf, "build")
    assert [(n.node, n.step, n.status) for n in nodes] == [
        ("plan", 1, "completed"), ("write", 2, "completed"), ("check", 3, "completed"), ("report", 4, "completed")
    ]  # fmt: skip
    lines = [line for e in await events_of(engine, wf, "task.output") for line in output_lines(e)]
    assert "▶ write (step 2)" in lines  # the pane shows each node as it starts
    assert "write working on parser" in lines  # `custom` stream mode
    assert any(line.startswith("  write → ") for line in lines)  # `updates` stream mode
    started = [e.data["node"] for e in await events_of(engine, wf, "node.started")]
    assert started == ["plan", "write", "check", "report"]


async def test_a_factory_is_called_for_the_graph(engine: Engine) -> None:
    wf = await engine.submit(spec("factory"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "check": 1, "report": 1}


async def test_cancel_mid_node_then_resume_reruns_only_that_node(engine: Engine) -> None:
    gate = hold("write")
    wf = await engine.submit(spec("held_in_write"))
    await graphs.STARTED["write"].wait()
    await engine.cancel(wf)  # the node is stopped mid-execution, for real
    assert await engine.wait(wf) is WorkflowStatus.CANCELLED
    await asyncio.sleep(0.2)
    # write was stopped inside its wait, for real — not left running unowned after the task was cancelled
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "write cancelled": 1}
    cancelled = [n for n in await engine.stores.graph_nodes.list(wf) if n.status == "cancelled"]
    assert [n.node for n in cancelled] == ["write"]
    gate.set()
    await engine.resume_workflow(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"plan": 1, "write": 2, "write cancelled": 1, "check": 1, "report": 1}
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["log"] == ["plan", "write", "check", "report"]


async def test_pause_stops_at_the_next_step_boundary_and_resume_continues(engine: Engine) -> None:
    gate = hold("write")
    wf = await engine.submit(spec("held_in_write"))
    await graphs.STARTED["write"].wait()
    await engine.pause(wf)
    gate.set()  # the running step finishes; the graph must stop before `check`
    await asyncio.sleep(0.5)
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1}
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.status is TaskStatus.PAUSED
    await engine.resume(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "check": 1, "report": 1}
    lines = [line for e in await events_of(engine, wf, "task.output") for line in output_lines(e)]
    assert any("paused at a step boundary" in line for line in lines)


async def test_approval_round_trip_resumes_the_graph_with_the_answer(engine: Engine) -> None:
    wf = await engine.submit(spec("with_approval"))
    await status_becomes(engine, wf, TaskStatus.WAITING)
    [requested] = await events_of(engine, wf, "approval.requested")
    assert requested.task == "build" and requested.data["question"] == "ship parser?"
    assert requested.data["node"] == "approve"
    approval = await engine.approve(wf, "build", {"ship": True, "note": "lgtm"})
    assert approval.status is ApprovalStatus.ANSWERED
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["answer"] == {"ship": True, "note": "lgtm"}
    assert graphs.RUNS["report"] == 1 and graphs.RUNS["check"] == 1  # nothing before the interrupt re-ran
    [answered] = await events_of(engine, wf, "approval.answered")
    assert answered.data["value"] == {"ship": True, "note": "lgtm"} and answered.data["by"] == "user"


async def test_deny_answers_false_and_a_second_answer_is_refused(engine: Engine) -> None:
    wf = await engine.submit(spec("with_approval"))
    await status_becomes(engine, wf, TaskStatus.WAITING)
    await engine.approve(wf, "build", deny=True)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["answer"] is False
    assert [e.type for e in await events_of(engine, wf, "approval.")] == ["approval.requested", "approval.denied"]
    from engine.errors import ControlError

    with pytest.raises(ControlError, match="no open approval"):
        await engine.approve(wf, "build", True)


async def test_a_deadline_applies_the_default_and_says_so(engine: Engine) -> None:
    # The wait for a person does not count against the task's timeout: 1.5 s of waiting under a 1 s timeout.
    graphs.DEADLINE["deadline_s"] = 1.5
    wf = await engine.submit(spec("with_approval", timeout=1))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["answer"] == "auto"
    [answered] = await events_of(engine, wf, "approval.answered")
    assert answered.data == {
        "approval": answered.data["approval"], "value": "auto", "by": "deadline", "default_applied": True
    }  # fmt: skip


async def test_an_answer_written_while_nobody_runs_the_workflow_is_used_on_resume(engine: Engine) -> None:
    wf = await engine.submit(spec("with_approval"))
    await status_becomes(engine, wf, TaskStatus.WAITING)
    await engine.cancel(wf)
    await engine.approve(wf, "build", "later")  # nobody waits: it is only written down
    await engine.resume_workflow(wf)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["answer"] == "later"
    assert [e.type for e in await events_of(engine, wf, "approval.")] == ["approval.requested", "approval.answered"]


async def test_fork_from_step_2_runs_only_the_steps_after_it(engine: Engine) -> None:
    wf = await engine.submit(spec("linear"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    history = await engine.graph_history(wf, "build")
    assert [h.step for h in history] == [4, 3, 2, 1, 0, -1]
    step2 = next(h for h in history if h.step == 2)
    assert step2.ran == ["write"] and step2.next == ["check"] and step2.values["log"] == ["plan", "write"]
    graphs.RUNS.clear()
    await engine.fork_graph(wf, "build", step2.checkpoint, {"topic": "lexer"})
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"check": 1, "report": 1}
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["topic"] == "lexer"
    assert task.output["log"] == ["plan", "write", "check", "report"]
    assert len(await engine.graph_history(wf, "build")) > len(history)  # the fork adds; history is kept


def with_downstream() -> WorkflowSpec:
    """The linear graph, then a task using its output, then one after that (an unrelated one stays put)."""
    steps = "tests.integration.workflows.steps"
    return WorkflowSpec.model_validate(
        {
            "name": "graph-downstream",
            "agents": {"g": {"kind": "graph", "graph": f"{GRAPHS}:linear"},
                       "py": {"kind": "python", "callable": f"{steps}:echo_upstream"}},
            "tasks": [
                {"id": "build", "agent": "g", "input": {"topic": "parser"}},
                {"id": "use", "agent": "py", "depends_on": ["build"]},
                {"id": "ship", "agent": "py", "depends_on": ["use"]},
                {"id": "aside", "agent": "py"},
            ],
        }
    )  # fmt: skip


@pytest.mark.parametrize("downstream", [True, False])
async def test_a_fork_reruns_the_completed_tasks_after_it_unless_told_to_keep_them(
    engine: Engine, downstream: bool
) -> None:
    wf = await engine.submit(with_downstream())
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    before = {t.key: t for t in await engine.stores.tasks.list(wf)}
    assert before["use"].output["upstream"]["build"]["topic"] == "parser"
    step2 = next(h for h in await engine.graph_history(wf, "build") if h.step == 2)

    await engine.fork_graph(wf, "build", step2.checkpoint, {"topic": "lexer"}, downstream=downstream)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    after = {t.key: t for t in await engine.stores.tasks.list(wf)}
    assert after["build"].output["topic"] == "lexer"
    seen = after["use"].output["upstream"]["build"]["topic"]
    if downstream:  # they ran again, on the new output
        assert seen == "lexer" and after["use"].attempts == 2 and after["ship"].attempts == 2
    else:  # they kept what they had made
        assert seen == "parser" and after["use"].attempts == 1 and after["ship"].attempts == 1
    assert after["aside"].attempts == 1  # not downstream: never touched
    [forked] = await events_of(engine, wf, "graph.forked")
    assert forked.data["downstream"] is downstream


async def test_replay_from_a_checkpoint_without_edits(engine: Engine) -> None:
    wf = await engine.submit(spec("linear"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    step1 = next(h for h in await engine.graph_history(wf, "build") if h.step == 1)
    graphs.RUNS.clear()
    await engine.fork_graph(wf, "build", step1.checkpoint)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"write": 1, "check": 1, "report": 1}


async def test_retry_of_a_finished_graph_task_runs_it_afresh_on_a_new_thread(engine: Engine) -> None:
    wf = await engine.submit(spec("linear"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    graphs.RUNS.clear()
    await engine.retry(wf, "build")
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "check": 1, "report": 1}
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.thread == f"{wf}:build#2"
    assert task.output["log"] == ["plan", "write", "check", "report"]  # a fresh state, not appended to the old


async def test_rollback_forks_the_graph_thread_from_the_matching_checkpoint(engine: Engine) -> None:
    gate = hold("check")
    workflow = WorkflowSpec.model_validate(
        {
            "name": "graph-rollback",
            "agents": {
                "g": {"kind": "graph", "graph": f"{GRAPHS}:held_in_check"},
                "py": {"kind": "python", "callable": f"{GRAPHS}:wait_until_check_runs"},
            },
            "tasks": [
                {"id": "build", "agent": "g", "input": {"topic": "parser"}},
                {"id": "watch", "agent": "py"},
            ],
        }
    )
    wf = await engine.submit(workflow)
    await graphs.STARTED["check"].wait()
    async with asyncio.timeout(30):
        while (cps := await engine.stores.checkpoints.list(wf)) == [] or cps[-1].task != "watch":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    mid_graph = cps[-1]  # taken when `watch` completed, while `build` was inside `check`
    gate.set()
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    graphs.RUNS.clear()
    graphs.STARTED.clear()
    await engine.rollback(wf, mid_graph.id)
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"check": 1, "report": 1}  # plan and write had run by then: not again
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["log"] == ["plan", "write", "check", "report"]


async def test_an_answer_from_another_engine_on_a_server_database_is_announced_by_the_owner(
    surreal_server_url: str, tmp_path: Path
) -> None:
    """Two engines on one server database (a headless run and a dashboard elsewhere): the dashboard's answer is
    written to the approval row; the owning engine picks it up and announces it in its own event sequence."""
    settings = server_settings(f"appr_{uuid.uuid4().hex[:8]}")
    async with (
        connect(surreal_server_url, settings) as db_a,
        connect(surreal_server_url, settings) as db_b,
        Engine(db_a, workdir_root=tmp_path / "a") as owner,
        Engine(db_b, workdir_root=tmp_path / "b") as other,
    ):
        wf = await owner.submit(spec("with_approval"))
        await status_becomes(owner, wf, TaskStatus.WAITING)
        await other.approve(wf, "build", "from elsewhere", by="dashboard@b")
        assert await owner.wait(wf) is WorkflowStatus.COMPLETED
        task = await owner.stores.tasks.get(wf, "build")
        assert task is not None and task.output["answer"] == "from elsewhere"
        stored = await events_of(owner, wf)
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))  # one sequence, no clash
        [answered] = [e for e in stored if e.type == "approval.answered"]
        assert answered.data["by"] == "dashboard@b"


async def test_a_model_reply_streams_into_the_pane_line_by_line(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat model is langchain-core's GenericFakeChatModel — a fake standing in for an LLM provider, which
    streams its reply in small chunks as a provider does. The graph, the stream and the pane events are real."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    reply = "A parser reads tokens.\nIt builds a tree.\nThen the tree is checked."
    model = GenericFakeChatModel(messages=iter([AIMessage(content=reply)]))
    monkeypatch.setattr(graphs, "streamed", graphs.chatty(model), raising=False)
    wf = await engine.submit(spec("streamed"))
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    said = [
        line
        for e in await events_of(engine, wf, "task.output")
        if e.data.get("stream") == "llm"
        for line in output_lines(e)
    ]
    assert said == ["A parser reads tokens.", "It builds a tree.", "Then the tree is checked."]
    task = await engine.stores.tasks.get(wf, "build")
    assert task is not None and task.output["answer"] == reply


async def test_a_static_breakpoint_asks_to_go_on(engine: Engine) -> None:
    wf = await engine.submit(spec("with_breakpoint"))  # compiled with interrupt_before=["check"]
    await status_becomes(engine, wf, TaskStatus.WAITING)
    [asked] = await events_of(engine, wf, "approval.requested")
    assert asked.data["question"] == "continue past the breakpoint at check?"
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1}
    await engine.approve(wf, "build")
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    assert dict(graphs.RUNS) == {"plan": 1, "write": 1, "check": 1, "report": 1}


async def test_a_secret_in_an_approval_prompt_is_redacted_everywhere(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_TEST_TOKEN", "tok-5ecret-value")
    wf = await engine.submit(spec("leaky", secrets=["AGENTDECK_TEST_TOKEN"]))
    await status_becomes(engine, wf, TaskStatus.WAITING)
    [stored] = await engine.approvals.pending(wf)
    assert stored.prompt == {"question": "deploy with token ***?"}
    await engine.approve(wf, "build")
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    everything = " ".join(str(e.to_json_dict()) for e in await events_of(engine, wf))
    assert "tok-5ecret-value" not in everything and "deploy with token ***?" in everything
