"""The engine's controls of one workflow: pause, resume, cancel, retry, rollback, approve, checkpoint.

Each acts on the workflow's run in this engine; a workflow nobody runs is adopted first (``Engine._adopt``); on a
server database, a workflow another live engine runs is controlled by that engine, through a control request
(``_elsewhere``). ``Engine`` (``engine.engine``) inherits these; the graph controls (history, fork) stay there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from db.connection import Database
from db.models import Approval, Checkpoint, EventType, Workflow, WorkflowStatus
from db.stores import Stores
from engine import diverge as divergence
from engine.control_ask import ask_owner_via_database
from engine.errors import ControlError
from engine.events import EventRecorder
from engine.graph.approvals import Approvals
from engine.run import WorkflowRun
from engine.spec import WorkflowSpec

_LIVE = (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)


def lease_expired(workflow: Workflow, embedded: bool = False) -> bool:
    """True when a running or paused workflow's owner stopped (it crashed or was killed): it is resumable.

    On an embedded database whoever can read the workflow holds the lock, so its owner is gone unless it is
    this process (callers exclude their own runs); on a server the lease must have run out.
    """
    if workflow.status is WorkflowStatus.STOPPED:
        return True  # stopped on purpose: it has no owner
    if workflow.status not in (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED, WorkflowStatus.PENDING):
        return False
    return embedded or workflow.lease_until is None or workflow.lease_until <= datetime.now(UTC)


class EngineControls:
    """Controls of ``Engine`` (its base class), over its runs and stores."""

    db: Database
    stores: Stores
    recorder: EventRecorder
    approvals: Approvals
    runs: dict[str, WorkflowRun]
    owner: str

    if TYPE_CHECKING:

        @property
        def saver(self) -> Any: ...  # the LangGraph checkpointer (``Engine.saver``)

        async def resume_workflow(self, workflow_id: str) -> str: ...

        async def _adopt(
            self, workflow_id: str, *, completed_ok: bool = False, lease_ok: bool = False
        ) -> WorkflowRun: ...

        def _launch(self, run: WorkflowRun, resumed: bool) -> None: ...

    async def _workflow(self, workflow_id: str) -> Workflow:
        workflow = await self.stores.workflows.get(workflow_id)
        if workflow is None:
            raise ControlError(f"no workflow {workflow_id!r}")
        return workflow

    async def _live_run(self, workflow_id: str) -> WorkflowRun | None:
        """The run of ``workflow_id`` in this engine, or None. A run that is already storing its end is waited
        for and treated as stopped, so a control landing then acts on the finished workflow, never on a run
        that can no longer schedule what the control asks for."""
        run = self.runs.get(workflow_id)
        if run is not None and run.ending:
            await run.finished.wait()
            return None
        return run

    async def _run(self, workflow_id: str, action: str) -> WorkflowRun:
        run = await self._live_run(workflow_id)
        if run is None:
            raise ControlError(f"cannot {action} workflow {workflow_id}: it is not running")
        return run

    async def _elsewhere(self, workflow_id: str, op: str, **args: Any) -> bool:
        """On a server database, a workflow another live engine runs (a dashboard attached from elsewhere) is
        controlled by that engine, through a control request; returns whether it was."""
        return await self._answer_elsewhere(workflow_id, op, **args) is not None

    async def _answer_elsewhere(self, workflow_id: str, op: str, **args: Any) -> str | None:
        """``_elsewhere``, returning the owner's answer (None: no other engine runs it, act here)."""
        if self.db.is_embedded or workflow_id in self.runs:
            return None
        try:
            answer = await ask_owner_via_database(self.db, self.stores, workflow_id, op, args)
        except TimeoutError:
            raise ControlError(f"the engine running {workflow_id} did not answer within 15 s") from None
        if answer is not None and not answer[0]:
            raise ControlError(answer[1])
        return None if answer is None else answer[1]

    async def pause(self, workflow_id: str) -> None:
        await self._workflow(workflow_id)
        if not await self._elsewhere(workflow_id, "pause"):
            await (await self._run(workflow_id, "pause")).pause()

    async def resume(self, workflow_id: str) -> None:
        """Unpause a paused run; a stopped workflow (crash, cancel) is resumed from its last checkpoint."""
        if await self._elsewhere(workflow_id, "resume"):
            return
        run = await self._live_run(workflow_id)
        if run is not None:
            await run.resume()
        else:
            await self.resume_workflow(workflow_id)

    async def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow: a live run stops its tasks; a stopped one (crashed, killed) is adopted and ended
        as cancelled the same way, so it is no longer offered for recovery."""
        if await self._elsewhere(workflow_id, "cancel"):
            return
        run = await self._live_run(workflow_id)
        if run is None:
            workflow = await self._workflow(workflow_id)
            if workflow.status.finished:
                raise ControlError(f"workflow {workflow_id} already {workflow.status.value}")
            run = await self._adopt(workflow_id, lease_ok=True)
            self._launch(run, resumed=True)  # cancelled before its first step: it goes straight to its end
        await run.cancel()

    async def retry(self, workflow_id: str, task: str, *, fresh: bool = True, downstream: bool = False) -> None:
        """Run one task again with its upstream outputs as they are (and what it blocked downstream; with
        ``downstream``, the tasks after it that completed too, since they used its old output).

        A finished graph task runs afresh on a new thread; with ``fresh=False`` it continues from its thread's
        head instead (after a time-travel fork). A workflow nobody runs is adopted, retried, then started."""
        if fresh and not downstream and await self._elsewhere(workflow_id, "retry", task=task):
            return
        run = await self._live_run(workflow_id)
        if run is not None:
            await run.retry(task, fresh=fresh, downstream=downstream)
            return
        spec = WorkflowSpec.model_validate((await self._workflow(workflow_id)).spec)
        if task not in {t.id for t in spec.tasks}:  # checked before adopting: a refused retry claims nothing
            raise ControlError(f"workflow {workflow_id} has no task {task!r}")
        run = await self._adopt(workflow_id, completed_ok=True)
        await run.retry(task, fresh=fresh, downstream=downstream)
        self._launch(run, resumed=True)

    async def rollback(self, workflow_id: str, checkpoint_id: str) -> Checkpoint:
        """Return to a checkpoint: later tasks and memories are undone and run again; history is kept.
        A workflow nobody runs is adopted, rolled back, then started."""
        checkpoint = await self.stores.checkpoints.get(checkpoint_id)
        if checkpoint is None or checkpoint.workflow != workflow_id:
            raise ControlError(f"workflow {workflow_id} has no checkpoint {checkpoint_id!r}")
        if await self._elsewhere(workflow_id, "rollback", checkpoint=checkpoint_id):
            return checkpoint
        run = await self._live_run(workflow_id)
        if run is not None:
            await run.rollback(checkpoint)
            return checkpoint
        run = await self._adopt(workflow_id, completed_ok=True)
        await run.rollback(checkpoint)
        self._launch(run, resumed=True)
        return checkpoint

    async def approve(
        self, workflow_id: str, task: str, value: Any = True, *, deny: bool = False, by: str = "user"
    ) -> Approval:
        """Answer the open approval of a graph task (yes, no, or a value); the graph resumes with it."""
        if await self._live_run(workflow_id) is not None:
            return await self.approvals.answer(workflow_id, task, value, deny=deny, by=by)
        workflow = await self._workflow(workflow_id)
        if not self.db.is_embedded and not lease_expired(workflow) and workflow.status in _LIVE:
            # Another engine runs it (a dashboard on a server database): it announces the answer itself.
            return await self.approvals.answer(workflow_id, task, value, deny=deny, by=by, quiet=True)
        await self.recorder.resume_sequence(workflow_id)  # nobody runs it: our events continue its sequence
        return await self.approvals.answer(workflow_id, task, value, deny=deny, by=by)

    async def diverge(self, workflow_id: str, at_seq: int, values: dict[str, Any] | None = None) -> str:
        """Diverge here: a new workflow with the same spec, started from the newest checkpoint at or before event
        ``at_seq`` of ``workflow_id`` (its completed tasks carried over, never run again; its graph tasks continue
        from where their threads stood then, ``values`` — ``{task: {state key: value}}`` — edited in); returns its
        id (``engine.diverge``)."""
        planned = await divergence.plan(self.stores, workflow_id, at_seq, self.owner)
        await divergence.carry_graphs(self, planned, values)
        writer = self.recorder.writer
        for task in planned.tasks:
            writer.new_task(task)
        writer.new_workflow(planned.workflow)
        self.recorder.emit(planned.workflow.id, EventType.WORKFLOW_CREATED, data=planned.created_data())
        created = writer.mark()
        tasks = {t.key: t.model_copy() for t in planned.tasks}
        self._launch(WorkflowRun(self, planned.workflow, planned.spec, tasks), resumed=False)  # type: ignore[arg-type]
        await writer.commit(upto=created)
        return planned.workflow.id

    async def checkpoint(self, workflow_id: str, reason: str = "manual") -> Checkpoint:
        return await (await self._run(workflow_id, "checkpoint")).checkpoint(reason=reason)
