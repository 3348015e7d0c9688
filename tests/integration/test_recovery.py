"""Crash recovery through the real command line (design.md, "crash recovery").

``agentdeck run`` runs a 12-task DAG whose tasks each append ``TASK PID`` to a log file halfway through. The test
kills the runner with SIGKILL at one of 10 points (a log line appeared, a task started, completed, or was
checkpointed), reads the store it left behind, runs ``agentdeck resume``, and asserts that every task completed
before the kill had its side effect exactly once (by the killed process), that every other task ran in the
resuming process exactly once, and that the workflow completes with a gap-free stored event stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from db import connect
from db.errors import DatabaseUnavailable
from db.models import Event, Task, TaskStatus, Workflow, WorkflowStatus
from db.stores import Stores
from tests.integration.test_cli_engine import WORKFLOWS, RunningWorkflow, agentdeck, clean_env, json_lines

TASKS = [f"t{i:02d}" for i in range(1, 13)]


@dataclass
class Stored:
    workflow: Workflow
    tasks: dict[str, Task]
    events: list[Event]


def read_store(url: str, workflow: str, attempts: int = 100) -> Stored:
    """What the store holds now. Right after a SIGKILL the embedded engine's lock may take a moment to go."""

    async def read() -> Stored:
        async with connect(url) as db:
            stores = Stores.over(db)
            found = await stores.workflows.get(workflow)
            assert found is not None, f"workflow {workflow} is not in the store"
            tasks = {t.key: t for t in await stores.tasks.list(workflow)}
            return Stored(found, tasks, await stores.events.list(workflow))

    for _ in range(attempts - 1):
        try:
            return asyncio.run(read())
        except DatabaseUnavailable:
            time.sleep(0.1)
    return asyncio.run(read())


def log_entries(path: Path) -> list[tuple[str, int]]:
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        task, pid = line.split()
        entries.append((task, int(pid)))
    return entries


Trigger = Callable[[RunningWorkflow, Path], bool]


def after_log_lines(k: int) -> Trigger:
    """Kill once ``k`` side effects happened: mostly mid-task (the line is written halfway through a task)."""
    return lambda run, log: len(log_entries(log)) >= k


def after_events(kind: str, k: int) -> Trigger:
    """Kill right after the ``k``-th event of type ``kind`` reached stdout."""
    return lambda run, log: sum(1 for e in run.snapshot() if e["type"] == kind) >= k


KILL_POINTS: dict[str, Trigger] = {
    "line-1": after_log_lines(1),
    "completed-1": after_events("task.completed", 1),
    "started-3": after_events("task.started", 3),
    "line-4": after_log_lines(4),
    "checkpoint-5": after_events("checkpoint.created", 5),
    "line-6": after_log_lines(6),
    "completed-7": after_events("task.completed", 7),
    "started-9": after_events("task.started", 9),
    "line-10": after_log_lines(10),
    "completed-11": after_events("task.completed", 11),
}


def start_and_kill(tmp_path: Path, trigger: Trigger) -> tuple[str, int, list[dict[str, object]], str, Path]:
    """Run the DAG, SIGKILL the runner when ``trigger`` holds. Returns (workflow, pid, events seen, url, log)."""
    url = f"surrealkv://{tmp_path / 'state.db'}"
    log = tmp_path / "side-effects.log"
    env = clean_env(tmp_path)
    run = RunningWorkflow(
        ["run", str(WORKFLOWS / "recovery_dag.yaml"), "--headless", "--json", "--db", url, "--var", f"log={log}"],
        env,
        tmp_path / "run.stderr",
    )
    try:
        deadline = time.monotonic() + 120
        while not trigger(run, log):
            assert run.proc.poll() is None, f"the run ended before the kill point; stderr: {run.stderr()}"
            assert time.monotonic() < deadline, f"the kill point was not reached; events: {run.snapshot()[-3:]}"
            time.sleep(0.002)
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.wait_exit(timeout=30) == -signal.SIGKILL
        seen = run.snapshot()
    finally:
        run.stop()
    assert seen and seen[0]["type"] == "workflow.created"
    return str(seen[0]["workflow"]), run.proc.pid, seen, url, log


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_resume_after_sigkill_runs_each_completed_task_exactly_once(tmp_path: Path, kill_point: str) -> None:
    workflow, killed_pid, seen, url, log = start_and_kill(tmp_path, KILL_POINTS[kill_point])
    before = log_entries(log)
    assert all(pid == killed_pid for _, pid in before)

    crashed = read_store(url, workflow)
    done = {key for key, task in crashed.tasks.items() if task.status is TaskStatus.COMPLETED}
    reported_done = {str(e["task"]) for e in seen if e["type"] == "task.completed"}
    # A completion printed on stdout was stored first: a crash never loses a task's state.
    assert reported_done <= done, f"reported completed but not stored: {sorted(reported_done - done)}"
    assert done != set(TASKS), "the kill came too late to test anything"
    assert crashed.workflow.status in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING)
    for key in done:  # a task is completed only after its side effect
        assert before.count((key, killed_pid)) == 1, (key, before)
    stored_seqs = [e.seq for e in crashed.events]
    assert stored_seqs == list(range(1, len(stored_seqs) + 1)), "stored events have gaps before the resume"

    env = clean_env(tmp_path, AGENTDECK_DB=url)
    resumed = agentdeck("resume", workflow, "--headless", "--json", env=env, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    events = json_lines(resumed.stdout)
    assert events and events[-1]["type"] == "workflow.completed", events[-3:]
    assert all(e["workflow"] == workflow for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the resumed stream has gaps"
    assert seqs[0] == len(stored_seqs) + 1, "the resumed stream does not continue the stored one"
    restarted = {e["task"] for e in events if e["type"] == "task.started"}
    assert not restarted & done, f"completed tasks ran again: {sorted(restarted & done)}"
    assert restarted == set(TASKS) - done

    entries = log_entries(log)
    counts = Counter(task for task, _ in entries)
    resumer = {pid for _, pid in entries[len(before) :]}
    assert len(resumer) == 1 and killed_pid not in resumer, resumer
    for key in TASKS:
        if key in done:
            assert entries.count((key, killed_pid)) == 1 and counts[key] == 1, (key, entries)
        else:  # ran to completion in the resumer; the killed run may have got as far as its side effect
            assert sum(1 for task, pid in entries if task == key and pid in resumer) == 1, (key, entries)
            assert counts[key] <= 2, (key, entries)

    final = read_store(url, workflow)
    assert final.workflow.status is WorkflowStatus.COMPLETED
    assert {key: task.status for key, task in final.tasks.items()} == dict.fromkeys(TASKS, TaskStatus.COMPLETED)
    final_seqs = [e.seq for e in final.events]
    assert final_seqs == list(range(1, len(final_seqs) + 1)), "the stored event stream is not gap-free"
    assert final.events[-1].type == "workflow.completed"


def test_a_killed_run_is_offered_for_resume(tmp_path: Path) -> None:
    """An embedded store the CLI can open has no live owner: a workflow left running in it is resumable now,
    not only once its lease runs out (design.md: the dashboard and ``workflows list`` offer it)."""
    workflow, _, _, url, _ = start_and_kill(tmp_path, after_events("task.completed", 2))
    env = clean_env(tmp_path, AGENTDECK_DB=url)
    shown = agentdeck("workflows", "show", workflow, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "running"
    assert state["resumable"] is True, "a crashed workflow is not offered for resume until its lease expires"
    listed = agentdeck("workflows", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {w["id"]: w["resumable"] for w in json.loads(listed.stdout)} == {workflow: True}
