"""The main screen's workflow controls: pause/resume, cancel, retry, resume a stopped workflow, rollback through the
checkpoint timeline, and time travel a graph task. Each goes through the engine's public API, one after another in
the order asked for; the main screen (``tui.screens.main``) binds the keys and owns the state used here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from textual import work
from textual.screen import Screen

from db.models import TaskStatus, WorkflowStatus
from engine.api import DashboardEngine
from engine.errors import ControlError
from tui.screens.confirm import ConfirmScreen
from tui.screens.time_travel import TimeTravelScreen
from tui.screens.timeline import CheckpointTimeline, DivergeFrom
from tui.widgets.workflow_tree import WorkflowTree


class WorkflowControls(Screen[None]):
    """The controls of ``MainScreen`` (its base class), acting on its selected workflow and task."""

    engine: DashboardEngine
    selected_workflow: str | None
    selected_task: str | None
    _controls: asyncio.Lock

    def _selected_status(self) -> WorkflowStatus | None:
        if self.selected_workflow is None:
            return None
        found = self.query_one(WorkflowTree).workflows.get(self.selected_workflow)
        return found.status if found else None

    @work(group="control", exit_on_error=False)
    async def _control(self, action: str, call: Callable[[], Awaitable[object]]) -> None:
        """Run one control; controls run one after another, in the order they were asked for."""
        async with self._controls:
            try:
                await call()
            except ControlError as exc:
                self.notify(str(exc), title=f"cannot {action}", severity="error")

    def action_pause_resume(self) -> None:
        workflow = self._need_workflow()
        if workflow is None:
            return

        async def pause_or_resume() -> None:
            # Decided when it runs, from the engine's own state (after any control asked before it): the tree's
            # copy lags a frame or more, and a quick double p must pause then resume.
            paused = self.engine.is_paused(workflow)
            if paused is None:
                paused = self._selected_status() is WorkflowStatus.PAUSED
            await (self.engine.resume(workflow) if paused else self.engine.pause(workflow))

        self._control("pause", pause_or_resume)

    def _need_workflow(self) -> str | None:
        if self.selected_workflow is None:
            self.notify("select a workflow in the tree first", severity="warning")
        return self.selected_workflow

    def action_cancel(self) -> None:
        workflow = self._need_workflow()
        if workflow is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._control("cancel", lambda: self.engine.cancel(workflow))

        self.app.push_screen(
            ConfirmScreen(f"Cancel {workflow}?", "Running processes are killed; tasks not done are skipped."), answered
        )

    def action_retry(self) -> None:
        if self.selected_workflow is None or self.selected_task is None:
            self.notify("select a task in the tree first", severity="warning")
            return
        task = self.query_one(WorkflowTree).tasks.get(self.selected_workflow, {}).get(self.selected_task)
        if task is not None and task.status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            self.notify(f"{self.selected_task} is running", severity="warning")
            return
        workflow, key = self.selected_workflow, self.selected_task
        self._control("retry", lambda: self.engine.retry(workflow, key))

    def action_resume_stopped(self) -> None:
        workflow = self._need_workflow()
        if workflow is not None:
            self._control("resume", lambda: self.engine.resume_workflow(workflow))

    @work(exclusive=True, group="timeline", exit_on_error=False)
    async def action_rollback(self) -> None:
        workflow = self._need_workflow()
        if workflow is None:
            return
        checkpoints = await self.engine.stores.checkpoints.list(workflow)
        if not checkpoints:
            self.notify("no checkpoints yet: one is taken each time a task completes", severity="warning")
            return
        tasks = await self.engine.stores.tasks.list(workflow)
        chosen = await self.app.push_screen_wait(CheckpointTimeline(workflow, checkpoints, tasks))
        if isinstance(chosen, DivergeFrom):
            await self._diverge_from(workflow, chosen)
            return
        if chosen is None:
            return
        number = next(c.number for c in checkpoints if c.id == chosen)
        confirmed = await self.app.push_screen_wait(
            ConfirmScreen(f"Roll {workflow} back to checkpoint #{number}?", "What came after it runs again.")
        )
        if confirmed:
            self._control("roll back", lambda: self.engine.rollback(workflow, chosen))

    async def _diverge_from(self, workflow: str, chosen: DivergeFrom) -> None:
        """Diverge here, from a live workflow's history: a new workflow from a checkpoint (after a yes)."""
        checkpoint = chosen.checkpoint
        confirmed = await self.app.push_screen_wait(
            ConfirmScreen(
                f"Diverge from {workflow} at checkpoint #{checkpoint.number}?",
                f"A new workflow with the same spec starts from there: {len(chosen.completed)} task(s) completed "
                f"then are carried over ({', '.join(chosen.completed) or 'none'}), the rest run. {workflow} stays "
                "as it is.",
            )
        )
        if not confirmed:
            return

        async def diverge() -> None:
            new = await self.engine.diverge(workflow, checkpoint.event_seq)
            self.notify(f"{new} started from checkpoint #{checkpoint.number} of {workflow}", title="diverged")

        self._control("diverge", diverge)

    def action_time_travel(self) -> None:
        workflow, task = self.selected_workflow, self.selected_task
        if workflow is None or task is None:
            self.notify("select a graph task in the tree first: time travel goes through its checkpoints",
                        severity="warning")  # fmt: skip
            return
        kind = self._agent_kind(workflow, task)
        if kind is not None and kind != "graph":
            self.notify(f"{task} is not a graph task (its agent is kind {kind}); b rolls the whole workflow back",
                        title="no time travel", severity="warning")  # fmt: skip
            return
        self._open_time_travel(workflow, task)

    def _agent_kind(self, workflow: str, task: str) -> str | None:
        tree = self.query_one(WorkflowTree)
        found, row = tree.workflows.get(workflow), tree.tasks.get(workflow, {}).get(task)
        if found is None or row is None:
            return None
        kind = found.spec.get("agents", {}).get(row.agent, {}).get("kind")
        return str(kind) if kind is not None else None

    @work(exclusive=True, group="time-travel", exit_on_error=False)
    async def _open_time_travel(self, workflow: str, task: str) -> None:
        try:
            history = await self.engine.graph_history(workflow, task)
        except ControlError as exc:
            self.notify(str(exc), title="no time travel", severity="error")
            return
        if not history:
            self.notify(f"{task} has no graph checkpoints yet: it has not run", severity="warning")
            return
        await self.app.push_screen(TimeTravelScreen(self.engine, workflow, task, history))
