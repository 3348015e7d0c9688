"""Watchpoint controls of ``Engine``: add, remove and list a workflow's watchpoints while it runs (or not).

A watchpoint is kept in the database first, then armed if this engine runs the workflow; on a server database a
workflow another engine runs is changed by that engine (a control request, like pause). A workflow nobody runs
keeps the change for when it is resumed. Each change is told as ``watchpoint.added`` / ``watchpoint.removed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db.models import EventType, Watchpoint, Workflow
from db.stores import Stores
from engine.errors import ControlError
from engine.events import EventRecorder
from engine.spec import WorkflowSpec
from engine.spec.watch_expr import WatchSyntaxError, parse_watch
from engine.watch.manager import WatchManager

__all__ = ["InvalidWatchpoint", "WatchControls"]


class InvalidWatchpoint(ControlError):
    """A watch expression that does not parse; ``column`` (1-based) points at the problem."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def check_expression(expr: str) -> None:
    """Raise ``InvalidWatchpoint`` (a ``ControlError``: exit 2 at the command line) unless ``expr`` parses."""
    try:
        parse_watch(expr)
    except WatchSyntaxError as exc:
        raise InvalidWatchpoint(f"invalid watch expression {expr!r}: {exc}", exc.column) from None


class WatchControls:
    """The watchpoint controls of ``Engine`` (a base class of it)."""

    stores: Stores
    recorder: EventRecorder
    watch: WatchManager

    if TYPE_CHECKING:
        runs: dict[str, Any]

        async def _workflow(self, workflow_id: str) -> Workflow: ...

        async def _answer_elsewhere(self, workflow_id: str, op: str, **args: Any) -> str | None: ...

    async def add_watchpoint(
        self, workflow_id: str, expr: str, task: str | None = None, *, name: str | None = None
    ) -> Watchpoint:
        """Watch ``workflow_id`` for ``expr`` (over one task's events with ``task``); returns the new watchpoint.

        Raises:
            InvalidWatchpoint: the expression does not parse (the message has the column).
            ControlError: no such workflow or task.
        """
        check_expression(expr)
        workflow = await self._workflow(workflow_id)
        if task is not None:
            spec = WorkflowSpec.model_validate(workflow.spec)
            if task not in {t.id for t in spec.tasks}:
                raise ControlError(f"workflow {workflow_id} has no task {task!r}")
        args = {"when": expr, "task": task, "name": name}
        answer = await self._answer_elsewhere(workflow_id, "watch_add", **args)
        if answer is not None:  # the engine running it added it: the id is its answer
            found = await self.stores.watchpoints.get(answer.strip())
            if found is None:
                raise ControlError(f"the engine running {workflow_id} added watchpoint {answer} but it is not stored")
            return found
        watchpoint = Watchpoint(workflow=workflow_id, when=expr, task=task, name=name, origin="live")
        await self.stores.watchpoints.put(watchpoint)
        if workflow_id in self.runs:
            self.watch.arm(watchpoint)
        await self._announce(workflow_id, EventType.WATCHPOINT_ADDED, watchpoint)
        return watchpoint

    async def remove_watchpoint(self, workflow_id: str, watchpoint_id: str) -> None:
        """Stop watching: the watchpoint is disarmed and forgotten (a file's too, for this workflow).

        Raises:
            ControlError: no such workflow, or it has no such watchpoint.
        """
        await self._workflow(workflow_id)
        await self.watch.settle()
        found = await self.stores.watchpoints.get(watchpoint_id)
        if found is None or found.workflow != workflow_id:
            raise ControlError(f"workflow {workflow_id} has no watchpoint {watchpoint_id!r}")
        if await self._answer_elsewhere(workflow_id, "watch_remove", watchpoint=watchpoint_id) is not None:
            return
        self.watch.disarm(workflow_id, watchpoint_id)
        await self.stores.watchpoints.delete(watchpoint_id)
        await self._announce(workflow_id, EventType.WATCHPOINT_REMOVED, found)

    async def watchpoints(self, workflow_id: str) -> list[Watchpoint]:
        """A workflow's watchpoints, oldest first (declared in its file, then added live)."""
        await self._workflow(workflow_id)
        await self.watch.settle()
        return await self.stores.watchpoints.list(workflow_id)

    async def _announce(self, workflow_id: str, kind: EventType, watchpoint: Watchpoint) -> None:
        if workflow_id not in self.runs:
            await self.recorder.resume_sequence(workflow_id)  # nobody runs it: our event continues its sequence
        data = {"watchpoint": watchpoint.id, "when": watchpoint.when, "name": watchpoint.name, "scope": watchpoint.task}
        self.recorder.emit(workflow_id, kind, data=data)
        await self.recorder.flush()
