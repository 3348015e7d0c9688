"""Snapshot tests (pytest-textual-snapshot) of each screen over a fixed, stored workflow.

The app opens its own ``mem://`` engine here (``make_app(db_url=..., prepare=...)``) because the snapshot plugin
runs the app on its own event loop; ``prepare`` writes a finished workflow with fixed ids and times, so the
screens are the same on every run. Baselines live in ``__snapshots__`` and are reviewed like code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from db.models import Checkpoint, Event, Task, TaskStatus, Workflow, WorkflowStatus
from engine.engine import Engine
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens.help import HelpScreen
from tui.screens.timeline import CheckpointTimeline
from tui.widgets.event_log import EventLog
from tui.widgets.workflow_tree import WorkflowTree

T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)

TASKS = [
    ("checkout", "git", [], TaskStatus.COMPLETED, 1, 4),
    ("build", "builder", ["checkout"], TaskStatus.COMPLETED, 1, 31),
    ("lint", "builder", ["checkout"], TaskStatus.COMPLETED, 2, 9),
    ("test", "tester", ["build"], TaskStatus.FAILED, 3, 47),
    ("package", "builder", ["test", "lint"], TaskStatus.SKIPPED, 0, 0),
]


async def seed(engine: Engine) -> None:
    stores = engine.stores
    await stores.workflows.create(
        Workflow(
            id="wf-snapshot01",
            name="nightly-build",
            status=WorkflowStatus.FAILED,
            spec={"tasks": [{"id": key} for key, *_ in TASKS]},
            created_at=T0,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=95),
        )
    )
    tasks, events, seq = [], [], 0
    for index, (key, agent, deps, status, attempts, seconds) in enumerate(TASKS):
        start = T0 + timedelta(seconds=5 * index)
        tasks.append(
            Task(
                workflow="wf-snapshot01",
                key=key,
                agent=agent,
                status=status,
                depends_on=deps,
                attempts=attempts,
                created_at=T0 + timedelta(milliseconds=index),
                started_at=start if attempts else None,
                finished_at=start + timedelta(seconds=seconds) if attempts else None,
                error="exit code 1: 2 failed, 41 passed" if status is TaskStatus.FAILED else None,
            )
        )
        kinds: list[tuple[str, dict[str, Any]]] = [("task.started", {"attempt": 1})]
        kinds.append(("task.output", {"line": f"{key}: working", "stream": "stdout"}))
        final = {"completed": "task.completed", "failed": "task.failed", "skipped": "task.skipped"}[status.value]
        kinds.append((final, {"error": "exit code 1"} if status is TaskStatus.FAILED else {}))
        for offset, (kind, data) in enumerate(kinds):
            seq += 1
            events.append(
                Event(
                    id=f"ev{seq:04d}",
                    seq=seq,
                    ts=start + timedelta(seconds=offset),
                    type=kind,
                    workflow="wf-snapshot01",
                    task=key,
                    agent=agent,
                    data=data,
                )
            )
    await stores.tasks.put_many(tasks)
    await stores.events.append_many(events)
    done: dict[str, Any] = {}
    for number, key in enumerate(["checkout", "build", "lint"], 1):
        done[key] = {"status": "completed", "output": None, "attempts": 1, "error": None}
        await stores.checkpoints.create(
            Checkpoint(
                id=f"cp-snapshot{number:02d}",
                workflow="wf-snapshot01",
                number=number,
                reason=f"{key} completed",
                task=key,
                full=False,
                task_states={key: done[key]},
                created_at=T0 + timedelta(seconds=10 * number),
            )
        )


def app() -> AgentDeckApp:
    return make_app(db_url="mem://", prepare=seed)


def loaded(application: AgentDeckApp) -> bool:
    """The tree shows the seeded workflow with all its tasks, and the event log holds its history."""
    tree, log = application.screen.query(WorkflowTree), application.screen.query(EventLog)  # not up yet: none
    if not tree or not log or len(log.first().events) < 3 * len(TASKS):
        return False
    shown = tree.first()
    labels = [str(node.label) for node in shown.root.children]
    return any("nightly-build" in label for label in labels) and len(shown.root.children[0].children) == len(TASKS)


SCREENS: dict[str, tuple[list[str], Callable[[AgentDeckApp], bool]]] = {
    "main": ([], lambda a: True),
    "help": (["question_mark"], lambda a: isinstance(a.screen, HelpScreen)),
    "timeline": (
        ["b"],
        lambda a: isinstance(a.screen, CheckpointTimeline) and a.screen.query_one(DataTable).row_count > 0,
    ),
    "event_filter": (["slash", *"failed"], lambda a: a.screen.query_one(EventLog).needle == "failed"),
}
SIZES = [(80, 24), (100, 30), (160, 48)]


def shot(name: str) -> Callable[[Any], Awaitable[None]]:
    """Wait for the stored workflow to be on screen, press the screen's keys, wait for what they open."""
    keys, shown = SCREENS[name]

    async def run_before(pilot: Any) -> None:
        await until(lambda: loaded(pilot.app), pilot=pilot)
        await pilot.press(*keys)
        await until(lambda: shown(pilot.app), pilot=pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor is drawn or not depending on when the shot is taken
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("name", ["main", "help", "timeline"])
def test_screen_snapshot(snap_compare: Any, name: str, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=shot(name))


def test_event_filter_snapshot(snap_compare: Any) -> None:
    assert snap_compare(app(), terminal_size=(140, 40), run_before=shot("event_filter"))
