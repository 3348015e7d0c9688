"""Watchpoints against real parts: embedded SurrealDB, real shell processes, real LangGraph graphs, the llm agent's
real tools driven by a langchain-core fake chat model (the one boundary faked).

Each kind of watchpoint runs on a workflow built to hit it — the workflow pauses (a shell task's processes are
stopped, in state T in /proc), ``watchpoint.triggered`` says which condition held with the values that made it
true, and the workflow resumes to its end — and on one that does not hit it, which runs to its end untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from langchain_core.messages import AIMessage

from db import connect
from db.models import Event, TaskStatus, Watchpoint, WorkflowStatus
from engine.engine import Engine
from engine.errors import ControlError
from engine.spec import WorkflowSpec
from engine.watch import InvalidWatchpoint
from tests.support.fake_llm import reply, script
from tests.support.polling import until

GRAPHS = "tests.integration.workflows.watch_graphs"
MODEL = "openai:gpt-4o-mini"  # priced in the shipped table
# Prints a line every 50 ms for ~6 s: long enough to be caught running, short enough to finish after a resume.
TICKING = "for i in $(seq 1 120); do echo tick $i; sleep 0.05; done"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


@pytest.fixture
def fake_model() -> Iterator[Any]:
    """``fake_model(replies)``: a ``FakeToolCallingChatModel`` (langchain-core fake) answers as ``MODEL``."""
    undo: list[Any] = []

    def register(replies: list[AIMessage]) -> None:
        _, unregister = script(MODEL, replies)
        undo.append(unregister)

    yield register
    for unregister in undo:
        unregister()


def spec(tasks: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    agents = {
        "sh": {"kind": "shell"},
        "g2": {"kind": "graph", "graph": f"{GRAPHS}:checks_twice"},
        "g1": {"kind": "graph", "graph": f"{GRAPHS}:checks_once"},
        "coder": {"kind": "llm", "model": MODEL, "options": {"tools": ["run_command"]}},
    }
    used = {name: agent for name, agent in agents.items() if any(t["agent"] == name for t in tasks)}
    return WorkflowSpec.model_validate({"name": "watched", "agents": used, "tasks": tasks, **extra})


async def events(engine: Engine, workflow: str) -> list[Event]:
    await engine.recorder.flush()
    return await engine.stores.events.list(workflow)


async def triggered(engine: Engine, workflow: str) -> list[Event]:
    return [e for e in await events(engine, workflow) if e.type == "watchpoint.triggered"]


async def paused_by_watchpoint(engine: Engine, workflow: str) -> Event:
    """Wait until the workflow is paused with a ``watchpoint.triggered`` stored; returns that event."""
    await until(lambda: engine.is_paused(workflow), f"workflow {workflow} paused by its watchpoint")
    found: list[Event] = await until(lambda: triggered(engine, workflow), "a watchpoint.triggered event")
    stored = await engine.stores.workflows.get(workflow)
    assert stored is not None and stored.status is WorkflowStatus.PAUSED
    return found[0]


def _proc_state(pid: int) -> str:
    """The state letter of ``/proc/PID/stat`` (after the command name, which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def frozen_process(pid: int, states: dict[int, str]) -> bool:
    """Stopped (T in /proc), or a shell in uninterruptible sleep waiting for a vfork child that is stopped itself
    (dash starts commands with vfork: the parent cannot run until that child execs, so it is frozen as well; its
    SIGSTOP is taken when the child lets it go, on resume)."""
    if states[pid] == psutil.STATUS_STOPPED:
        return True
    if states[pid] != psutil.STATUS_DISK_SLEEP:
        return False
    wchan = Path(f"/proc/{pid}/wchan").read_text()  # the vfork wait shows as itself or as kernel_clone (inlined)
    waiting_for_vfork = "vfork" in wchan or "clone" in wchan
    children = [child.pid for child in psutil.Process(pid).children()]
    return waiting_for_vfork and any(states.get(child) == psutil.STATUS_STOPPED for child in children)


async def processes_stopped(engine: Engine, workflow: str, task: str) -> list[int]:
    """The task's sandbox processes, once every one is frozen (state T in /proc, see ``frozen_process``). A process in
    disk sleep for another reason takes its SIGSTOP only when it leaves the kernel: waited for, generously."""
    run = engine.runs[workflow]

    def states() -> dict[int, str]:
        found: dict[int, str] = {}
        for key, pids in run.sandbox_pids():
            if key == task:
                for pid in pids:
                    try:
                        found[pid] = psutil.Process(pid).status()
                    except psutil.NoSuchProcess:
                        continue
        return found

    def frozen() -> bool:
        now = states()
        return bool(now) and all(frozen_process(pid, now) for pid in now)

    def seen() -> str:
        shown = []
        for pid, state in states().items():
            try:
                proc = psutil.Process(pid)
                wchan = Path(f"/proc/{pid}/wchan").read_text()
                shown.append(f"{pid} {proc.name()} {state} wchan={wchan} parent={proc.ppid()}")
            except (psutil.NoSuchProcess, OSError):
                continue
        return f"{task}'s processes stopped; they are: {shown}"

    await until(frozen, seen, limit_s=60)
    stopped = [pid for pid, state in states().items() if state == psutil.STATUS_STOPPED]
    assert stopped
    assert all(_proc_state(pid) in ("T", "t") for pid in stopped)  # what /proc says, not only psutil's reading
    return list(states())


async def _counted(engine: Engine, workflow: str) -> list[Watchpoint]:
    found = await engine.watchpoints(workflow)
    return found if all(w.triggered == 1 and w.last_triggered_at is not None for w in found) else []


async def resumes_to_the_end(engine: Engine, workflow: str, final: WorkflowStatus = WorkflowStatus.COMPLETED) -> None:
    await engine.resume(workflow)
    assert await engine.wait(workflow) is final, await engine.stores.tasks.list(workflow)


async def runs_untouched(engine: Engine, workflow: str, final: WorkflowStatus = WorkflowStatus.COMPLETED) -> None:
    assert await engine.wait(workflow) is final, await engine.stores.tasks.list(workflow)
    seen = await events(engine, workflow)
    assert [e for e in seen if e.type in ("watchpoint.triggered", "workflow.paused")] == []


# ---- output ------------------------------------------------------------------------------------------------------


async def test_an_output_line_matching_pauses_the_shell_and_it_resumes_where_it_was(engine: Engine) -> None:
    command = f"echo starting; echo 'Traceback (most recent call last):'; {TICKING}"
    wf = await engine.submit(spec([{"id": "leak", "agent": "sh", "run": command}],
                                  watch=['output ~ "Traceback|password"']))  # fmt: skip
    event = await paused_by_watchpoint(engine, wf)
    assert event.task == "leak" and event.agent == "sh"
    assert event.data["when"] == 'output ~ "Traceback|password"'
    (held,) = event.data["conditions"]
    assert held["kind"] == "output" and held["values"]["line"] == "Traceback (most recent call last):"
    assert "Traceback" in event.data["reason"]
    await processes_stopped(engine, wf, "leak")
    task = await engine.stores.tasks.get(wf, "leak")
    assert task is not None and task.status is TaskStatus.PAUSED
    counted = await until(lambda: _counted(engine, wf), "the trigger counted on the stored watchpoint")
    assert [(w.origin, w.when) for w in counted] == [("file", 'output ~ "Traceback|password"')]

    await resumes_to_the_end(engine, wf)
    lines = [line for e in await events(engine, wf) if e.type == "task.output" for line in e.output_lines]
    assert lines.count("tick 1") == 1 and "tick 120" in lines  # the same process went on, not a restart


async def test_output_not_matching_and_a_task_scoped_watchpoint_leave_the_workflow_alone(engine: Engine) -> None:
    tasks: list[dict[str, Any]] = [
        {"id": "quiet", "agent": "sh", "run": "echo all good", "watch": ['output ~ "password"']},
        {"id": "other", "agent": "sh", "run": "echo password=hunter2"},  # another task's line: not watched
    ]
    wf = await engine.submit(spec(tasks, watch=['output ~ "Traceback"']))
    await runs_untouched(engine, wf)


# ---- time --------------------------------------------------------------------------------------------------------


async def test_a_task_running_longer_than_the_limit_is_paused(engine: Engine) -> None:
    wf = await engine.submit(spec([{"id": "slow", "agent": "sh", "run": TICKING, "watch": ["running > 1s"]}]))
    event = await paused_by_watchpoint(engine, wf)
    assert event.task == "slow"
    (held,) = event.data["conditions"]
    assert held["kind"] == "running" and held["values"] == {"task": "slow", "limit_s": 1.0}
    await processes_stopped(engine, wf, "slow")
    await resumes_to_the_end(engine, wf)
    assert len(await triggered(engine, wf)) == 1  # the same attempt crossing once is one occurrence


async def test_a_task_ending_within_the_limit_is_not_paused(engine: Engine) -> None:
    wf = await engine.submit(spec([{"id": "quick", "agent": "sh", "run": "echo done"}], watch=["running > 30s"]))
    await runs_untouched(engine, wf)


# ---- failures and retries ----------------------------------------------------------------------------------------


async def test_failures_in_a_window_pause_what_still_runs(engine: Engine) -> None:
    tasks = [
        {"id": "bad1", "agent": "sh", "run": "echo one; exit 1"},
        {"id": "bad2", "agent": "sh", "run": "echo two; exit 1"},
        {"id": "long", "agent": "sh", "run": TICKING},
    ]
    wf = await engine.submit(spec(tasks, failure_policy="continue", watch=["failures >= 2 within 10m"]))
    event = await paused_by_watchpoint(engine, wf)
    (held,) = event.data["conditions"]
    assert held["kind"] == "failures"
    assert held["values"]["failures"] == 2 and held["values"]["tasks"] == ["bad1", "bad2"]
    assert held["values"]["within_s"] == 600
    await processes_stopped(engine, wf, "long")
    await resumes_to_the_end(engine, wf, WorkflowStatus.FAILED)  # its two failed tasks fail it, after "long" ends
    long = await engine.stores.tasks.get(wf, "long")
    assert long is not None and long.status is TaskStatus.COMPLETED


async def test_retries_pause_and_fewer_failures_than_the_limit_do_not(engine: Engine) -> None:
    tasks: list[dict[str, Any]] = [
        {"id": "flaky", "agent": "sh", "run": "exit 1", "retries": 2},
        {"id": "long", "agent": "sh", "run": TICKING},
    ]
    wf = await engine.submit(
        spec(tasks, failure_policy="continue", defaults={"retry_backoff": "50ms"}, watch=["retries >= 2 within 1m"])
    )
    event = await paused_by_watchpoint(engine, wf)
    assert event.task == "flaky" and event.data["conditions"][0]["values"]["retries"] == 2
    await processes_stopped(engine, wf, "long")
    await resumes_to_the_end(engine, wf, WorkflowStatus.FAILED)

    once = await engine.submit(
        spec([{"id": "bad", "agent": "sh", "run": "exit 1"}, {"id": "ok", "agent": "sh", "run": "echo fine"}],
             failure_policy="continue", watch=["failures >= 2 within 1m"])
    )  # fmt: skip
    await runs_untouched(engine, once, WorkflowStatus.FAILED)


# ---- graph nodes -------------------------------------------------------------------------------------------------


async def test_a_graph_node_run_twice_pauses_the_graph_at_its_step_boundary(engine: Engine) -> None:
    wf = await engine.submit(spec([{"id": "write_code", "agent": "g2"}], watch=["node check runs >= 2"]))
    event = await paused_by_watchpoint(engine, wf)
    assert event.task == "write_code"
    assert event.data["conditions"][0]["values"] == {"node": "check", "runs": 2, "limit": 2}
    await until(lambda: engine.stores.tasks.get(wf, "write_code"), "the task row")

    async def drained() -> bool:
        task = await engine.stores.tasks.get(wf, "write_code")
        nodes = await engine.stores.graph_nodes.list(wf, "write_code")
        return task is not None and task.status is TaskStatus.PAUSED and all(n.status != "running" for n in nodes)

    await until(drained, "the graph drained at its step boundary")
    ran = [n.node for n in await engine.stores.graph_nodes.list(wf, "write_code")]
    assert "report" not in ran  # held at the boundary after the second check
    await resumes_to_the_end(engine, wf)
    ran = [n.node for n in await engine.stores.graph_nodes.list(wf, "write_code")]
    assert ran.count("check") == 2 and ran[-1] == "report"


async def test_a_graph_node_run_once_does_not_pause(engine: Engine) -> None:
    wf = await engine.submit(spec([{"id": "write_code", "agent": "g1"}], watch=["node check runs >= 2"]))
    await runs_untouched(engine, wf)


# ---- llm agents: tool loops and budgets --------------------------------------------------------------------------


async def test_the_same_tool_call_three_times_pauses_the_agent(engine: Engine, fake_model: Any) -> None:
    same = ("run_command", {"command": "echo retrying"})
    fake_model(
        [reply(tool=same, tokens=(100, 5), call_id=f"c{i}") for i in range(3)] + [reply("gave up", tokens=(100, 5))]
    )
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "loop"},
                                    "watch": ["tool_repeats >= 3"]}]))  # fmt: skip
    event = await paused_by_watchpoint(engine, wf)
    values = event.data["conditions"][0]["values"]
    assert event.task == "agent" and values["tool"] == "run_command" and values["count"] == 3
    assert '"echo retrying"' in values["args"]
    await resumes_to_the_end(engine, wf)
    called = [e for e in await events(engine, wf) if e.type == "tool.called"]
    assert len(called) == 3 and len({e.data["call"] for e in called}) == 1


async def test_different_tool_calls_do_not_pause(engine: Engine, fake_model: Any) -> None:
    calls = [("run_command", {"command": f"echo {i}"}) for i in range(3)]
    fake_model([reply(tool=call, tokens=(100, 5), call_id=f"c{i}") for i, call in enumerate(calls)]
               + [reply("done", tokens=(100, 5))])  # fmt: skip
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "go"}}],
                                  watch=["tool_repeats >= 3"]))  # fmt: skip
    await runs_untouched(engine, wf)


async def test_a_budget_crossed_pauses_and_reports_the_spend(engine: Engine, fake_model: Any) -> None:
    # gpt-4o-mini: $0.15 per million input tokens; 100k input tokens cost $0.015 a call.
    step = ("run_command", {"command": "echo step"})
    fake_model([reply(tool=step, tokens=(100_000, 10), call_id=f"c{i}") for i in range(3)]
               + [reply("done", tokens=(1_000, 10))])  # fmt: skip
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "spend"}}],
                                  watch=["cost_usd > 0.02 and tokens > 150k"]))  # fmt: skip
    event = await paused_by_watchpoint(engine, wf)
    values = {held["kind"]: held["values"] for held in event.data["conditions"]}
    assert values["cost_usd"]["cost_usd"] == pytest.approx(0.03, abs=1e-3) and values["cost_usd"]["limit"] == 0.02
    assert values["tokens"]["tokens"] == 200_020
    await resumes_to_the_end(engine, wf)
    assert len(await triggered(engine, wf)) == 1  # a level stays true: it does not trigger again


async def test_a_budget_not_reached_does_not_pause(engine: Engine, fake_model: Any) -> None:
    fake_model(
        [reply(tool=("run_command", {"command": "echo x"}), tokens=(1_000, 10)), reply("ok", tokens=(1_000, 10))]
    )
    wf = await engine.submit(spec([{"id": "agent", "agent": "coder", "input": {"prompt": "cheap"}}],
                                  watch=["cost_usd > 0.50 or tokens > 200k"]))  # fmt: skip
    await runs_untouched(engine, wf)


# ---- live: add, remove, list, and kept across a resume --------------------------------------------------------------


async def test_watchpoints_added_and_removed_live_and_kept_for_a_resume(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path / 'state.db'}"
    command = f"{TICKING}; echo marker-line; {TICKING}"
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        wf = await engine.submit(spec([{"id": "job", "agent": "sh", "run": command}]))
        with pytest.raises(InvalidWatchpoint, match="column 11: the expression ends too early"):
            await engine.add_watchpoint(wf, "cost_usd >")
        with pytest.raises(ControlError, match="no task 'nope'"):
            await engine.add_watchpoint(wf, "running > 1h", task="nope")
        kept = await engine.add_watchpoint(wf, 'output ~ "marker-line"', task="job", name="marker")
        dropped = await engine.add_watchpoint(wf, 'output ~ "never printed"')  # not "tick": it could trigger first
        await engine.remove_watchpoint(wf, dropped.id)
        with pytest.raises(ControlError, match="no watchpoint"):
            await engine.remove_watchpoint(wf, dropped.id)
        assert [(w.id, w.origin, w.task, w.name) for w in await engine.watchpoints(wf)] == [
            (kept.id, "live", "job", "marker")
        ]
        told = [e.type for e in await events(engine, wf) if e.type.startswith("watchpoint.")]
        assert told == ["watchpoint.added", "watchpoint.added", "watchpoint.removed"]
        await until(lambda: engine.is_running(wf))
    # Closed while it ran (stopped, resumable); a new engine resumes it with its watchpoint.
    async with connect(url) as db, Engine(db, workdir_root=tmp_path / "work") as engine:
        assert [w.id for w in await engine.watchpoints(wf)] == [kept.id]
        await engine.resume_workflow(wf)
        event = await paused_by_watchpoint(engine, wf)
        assert event.data["watchpoint"] == kept.id and event.data["name"] == "marker"
        await processes_stopped(engine, wf, "job")
        await engine.cancel(wf)
        assert await engine.wait(wf) is WorkflowStatus.CANCELLED
