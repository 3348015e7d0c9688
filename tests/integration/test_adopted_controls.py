"""Controls on a workflow nobody runs: it is adopted (rebuilt from its rows), the control is applied to that run
as to a live one, and the events read as one run — the control's events after the run's own start.

A workflow left behind by an engine that closed while a task ran (it stays ``running*``, resumable) is the stopped
workflow here; a second engine on the same database carries out the control, as ``agentdeck workflows cancel`` or
``retry`` do when no engine runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.connection import Database
from db.models import Event, EventType, TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.errors import ControlError
from engine.spec import WorkflowSpec
from tests.support.polling import until


def spec() -> WorkflowSpec:
    tasks: list[dict[str, Any]] = [
        {"id": "a", "agent": "sh", "run": "echo a"},
        {"id": "b", "agent": "sh", "run": "sleep 60", "depends_on": ["a"]},
        {"id": "c", "agent": "sh", "run": "echo c", "depends_on": ["b"]},
    ]
    return WorkflowSpec.model_validate({"name": "stopped", "agents": {"sh": {"kind": "shell"}}, "tasks": tasks})


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with connect("mem://") as database:
        yield database


async def stopped_workflow(db: Database, tmp_path: Path) -> str:
    """A workflow whose engine closed while ``b`` ran: ``a`` completed, the workflow left stopped (resumable)."""
    async with Engine(db, workdir_root=tmp_path / "first", owner="first") as first:
        workflow = await first.submit(spec())
        tasks = first.stores.tasks

        async def b_running() -> bool:
            return any(t.key == "b" and t.status is TaskStatus.RUNNING for t in await tasks.list(workflow))

        await until(b_running, "task b running")
    return workflow


def run_starts(events: list[Event]) -> list[int]:
    return [
        i
        for i, e in enumerate(events)
        if e.type in (EventType.WORKFLOW_STARTED, EventType.WORKFLOW_RESUMED) and "tasks" in e.data
    ]


async def test_cancel_of_a_stopped_workflow_ends_it_as_a_run_ends(db: Database, tmp_path: Path) -> None:
    workflow = await stopped_workflow(db, tmp_path)
    async with Engine(db, workdir_root=tmp_path / "second", owner="second") as second:
        found = await second.stores.workflows.get(workflow)
        assert found is not None and found.status is WorkflowStatus.STOPPED, "left stopped (resumable)"
        await second.cancel(workflow)
        ended = await second.stores.workflows.get(workflow)
        assert ended is not None and ended.status is WorkflowStatus.CANCELLED and ended.owner is None
        states = {t.key: t.status for t in await second.stores.tasks.list(workflow)}
        assert states == {"a": TaskStatus.COMPLETED, "b": TaskStatus.SKIPPED, "c": TaskStatus.SKIPPED}
        events = await second.stores.events.list(workflow)
        last = events[-1]
        assert last.type == EventType.WORKFLOW_CANCELLED and last.data.get("while") == "stopped"
        assert len(run_starts(events)) == 1, "cancelling a stopped workflow does not start it"
        skipped = [
            e.task or ""
            for e in events
            if e.type == EventType.TASK_SKIPPED and e.data["reason"] == "workflow cancelled"
        ]
        assert sorted(skipped) == ["b", "c"], "what was unfinished is skipped by the cancel"
        with pytest.raises(ControlError, match="already cancelled"):
            await second.cancel(workflow)
        assert not second.is_running(workflow)


async def test_retry_of_a_stopped_workflow_is_recorded_inside_the_run_it_starts(db: Database, tmp_path: Path) -> None:
    workflow = await stopped_workflow(db, tmp_path)
    async with Engine(db, workdir_root=tmp_path / "second", owner="second") as second:
        with pytest.raises(ControlError, match="no task 'nope'"):
            await second.retry(workflow, "nope")
        refused = await second.stores.workflows.get(workflow)
        assert refused is not None, "a refused retry claims nothing"
        assert (refused.status, refused.owner) == (WorkflowStatus.STOPPED, None), "a refused retry claims nothing"
        await second.retry(workflow, "a")  # a completed task again, and what it blocked
        assert second.is_running(workflow)

        async def a_completed_twice() -> bool:
            await second.recorder.flush()
            events = await second.stores.events.list(workflow)
            return sum(1 for e in events if e.type == EventType.TASK_COMPLETED and e.task == "a") == 2

        await until(a_completed_twice, "a completed a second time")
        await second.cancel(workflow)  # b sleeps: the run the retry started is still going
        events = await second.stores.events.list(workflow)
        starts = run_starts(events)
        assert len(starts) == 2, "the first engine's run, then the one the retry started"
        retried = [i for i, e in enumerate(events) if e.type == EventType.TASK_QUEUED and e.data.get("retry")]
        assert retried and retried[0] > starts[1], "the retry's events come after the run's workflow.resumed"
        runs_of_a = [e for e in events if e.type == EventType.TASK_COMPLETED and e.task == "a"]
        assert len(runs_of_a) == 2, "a ran again"
