"""Snapshot tests of the graph screens: the approval prompt (with its countdown), time travel, and the state editor
showing a mistake — each over the main screen, whose tree shows a graph task's node leaves.

As in ``test_snapshots``, the app opens its own ``mem://`` engine and ``prepare`` writes fixed rows (ids, times);
the approval prompt's clock is stopped at ``T0`` so the countdown reads the same on every run, and the time travel
history is a fixed list (LangGraph's own checkpoint ids and times would differ per run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.widgets import DataTable, TextArea

from db.models import Approval, GraphNode, Task, TaskStatus, Workflow, WorkflowStatus
from engine.engine import Engine
from engine.graph.threads import HistoryEntry
from tests.support.polling import until
from tui import status
from tui.app import AgentDeckApp, make_app
from tui.screens import approval as approval_screen
from tui.screens.approval import ApprovalScreen
from tui.screens.time_travel import TimeTravelScreen
from tui.widgets.workflow_tree import WorkflowTree

T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
SIZE = (140, 40)
WF = "wf-graphsnap01"
NODES = [("plan", 2), ("write", 7), ("check", 3), ("approve", 0), ("report", 1)]
STATES = [
    {"topic": "v2.4", "log": [], "count": 0},
    {"topic": "v2.4", "log": ["plan"], "count": 1},
    {"topic": "v2.4", "log": ["plan", "write"], "count": 2},
    {"topic": "v2.4", "log": ["plan", "write", "check"], "count": 3},
    {"topic": "v2.4", "log": ["plan", "write", "check", "approve:true"], "count": 3, "answer": True},
    {"topic": "v2.4", "log": ["plan", "write", "check", "approve:true", "report"], "count": 4, "answer": True},
]


def history() -> list[HistoryEntry]:
    names = [name for name, _ in NODES]
    out = [
        HistoryEntry(
            checkpoint=f"1f0c9a2e-0000-6000-8000-00000000000{step + 1}",
            step=step,
            source="input" if step < 0 else "loop",
            ran=[] if step <= 0 else [names[step - 1]],
            next=["__start__"] if step < 0 else names[step : step + 1],
            created_at=(T0 + timedelta(seconds=3 * (step + 1))).isoformat(),
            summary=str(STATES[step] if step >= 0 else {"topic": "v2.4"}),
            values=STATES[step] if step >= 0 else {"topic": "v2.4"},
        )
        for step in range(-1, 5)
    ]
    return out[::-1]


def seeder(waiting: bool) -> Callable[[Engine], Awaitable[None]]:
    """A graph workflow stopped at its approval (``waiting``) or finished after it."""

    async def seed(engine: Engine) -> None:
        stores = engine.stores
        agents = {"writer": {"name": "writer", "kind": "graph", "graph": "tests.integration.workflows.graphs:linear"}}
        await stores.workflows.create(
            Workflow(
                id=WF,
                name="release-notes",
                status=WorkflowStatus.RUNNING if waiting else WorkflowStatus.COMPLETED,
                spec={"name": "release-notes", "agents": agents, "tasks": [{"id": "draft", "agent": "writer"}]},
                owner=engine.owner,  # this dashboard's engine: not offered as a stopped workflow to resume
                created_at=T0,
                started_at=None if waiting else T0,
                finished_at=None if waiting else T0 + timedelta(seconds=14),
            )
        )
        await stores.tasks.put_many(
            [
                Task(
                    workflow=WF,
                    key="draft",
                    agent="writer",
                    status=TaskStatus.WAITING if waiting else TaskStatus.COMPLETED,
                    attempts=1,
                    created_at=T0,
                    started_at=None if waiting else T0,  # a waiting task's elapsed time would tick
                    finished_at=None if waiting else T0 + timedelta(seconds=14),
                )
            ]
        )
        start = T0
        for step, (name, seconds) in enumerate(NODES[: 4 if waiting else 5], 1):
            stopped = waiting and name == "approve"
            await stores.graph_nodes.put(
                GraphNode(
                    id=f"{WF}/draft/n{step}",
                    workflow=WF,
                    task="draft",
                    thread=f"{WF}:draft",
                    node=name,
                    step=step,
                    status="interrupted" if stopped else "completed",
                    started_at=start,
                    finished_at=start + timedelta(seconds=seconds),
                )
            )
            start += timedelta(seconds=seconds)
        if waiting:
            await stores.approvals.open(
                Approval(
                    workflow=WF,
                    task="draft",
                    interrupt="int-0001",
                    node="approve",
                    prompt={
                        "question": "Publish the release notes for v2.4?",
                        "default": "hold",
                        "deadline_s": 12,
                        "changes": 14,
                        "risk": "low",
                        "reviewers": ["ana", "li"],
                    },
                    default="hold",
                    deadline=T0 + timedelta(seconds=12),
                    created_at=T0,
                )
            )

    return seed


def app(waiting: bool) -> AgentDeckApp:
    return make_app(db_url="mem://", prepare=seeder(waiting))


def tree_loaded(application: AgentDeckApp) -> bool:
    """The tree shows the graph task with its node leaves (read from the database after the first frame)."""
    trees = [tree for screen in application.screen_stack for tree in screen.query(WorkflowTree)]
    if not trees:
        return False
    workflows = trees[0].root.children
    return bool(workflows) and bool(workflows[0].children) and bool(workflows[0].children[0].children)


async def prompt_shown(pilot: Any) -> None:
    """The approval prompt is on top and mounted (it focused its Later button), over the loaded tree."""
    application = pilot.app
    await until(lambda: isinstance(application.screen, ApprovalScreen) and application.focused is not None, pilot=pilot)
    await until(lambda: tree_loaded(application), pilot=pilot)  # behind the prompt: checked on the main screen
    await pilot.pause()


async def open_time_travel(pilot: Any) -> None:
    application = pilot.app
    await until(lambda: tree_loaded(application), pilot=pilot)
    await application.push_screen(TimeTravelScreen(application.engine, WF, "draft", history()))
    await pilot.press("down", "down")  # newest first: step 4, 3, then 2
    await until(lambda: application.screen.query_one(DataTable).cursor_row == 2, pilot=pilot)
    await pilot.pause()


async def open_editor_with_a_mistake(pilot: Any) -> None:
    await open_time_travel(pilot)
    await pilot.press("e")
    editor = await until(lambda: next(iter(pilot.app.screen.query(TextArea)), None), pilot=pilot)
    editor.cursor_blink = False
    editor.load_text('{\n  "topic": "v2.5",\n  "log": ["plan", "write"]\n  "count": 2\n}')
    await pilot.press("ctrl+s")
    await until(lambda: str(pilot.app.screen.query_one("#editor-error").render()).strip(), pilot=pilot)
    await pilot.pause()


SIZES = [(80, 24), (100, 30), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_approval_prompt_snapshot(snap_compare: Any, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    monkeypatch.setattr(approval_screen, "now_utc", lambda: T0)  # "auto-answers "hold" in 12 s", every run
    # The waiting task's pane clock runs from its (real) start event: stopped before it, it reads 0s on every run,
    # however slow the machine (it read 1s now and then).
    monkeypatch.setattr(status, "now_utc", lambda: T0)
    assert snap_compare(app(waiting=True), terminal_size=size, run_before=prompt_shown)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_time_travel_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(waiting=False), terminal_size=size, run_before=open_time_travel)


def test_state_editor_snapshot(snap_compare: Any) -> None:
    assert snap_compare(app(waiting=False), terminal_size=SIZE, run_before=open_editor_with_a_mistake)
