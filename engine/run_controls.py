"""The controls acting on a running workflow: pause, resume, cancel, retry, rollback, checkpoints, and the
timeout clock that stops while a task is paused or waiting for a person.

``RunControls`` is a part of ``WorkflowRun`` (engine/run.py), kept in its own room so each stays readable;
``apply_rollback`` also serves a workflow nobody runs (``Engine.rollback``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from db.models import Checkpoint, Task, TaskStatus, Workflow, WorkflowStatus
from engine import checkpoints
from engine.errors import ControlError
from engine.graph.threads import thread_for_rerun

if TYPE_CHECKING:
    from engine.agents import TaskContext
    from engine.engine import Engine
    from engine.sandbox import Sandbox
    from engine.spec import WorkflowSpec


class RunControls:
    """Controls of ``WorkflowRun``, and the state writes they share with the scheduler. The attributes below are
    the run's own (set in ``WorkflowRun.__init__``)."""

    engine: Engine
    id: str
    workflow: Workflow
    status: WorkflowStatus
    spec: WorkflowSpec
    tasks: dict[str, Task]
    gate: asyncio.Event
    cancelled: bool
    finished: asyncio.Event
    _stop_new: bool
    _checkpoint_number: int
    _running: dict[str, asyncio.Task[None]]
    _sandboxes: dict[str, Sandbox]
    _timeouts: dict[str, asyncio.Timeout]
    _contexts: dict[str, TaskContext]
    _frozen: dict[str, float]
    _waiting_since: dict[str, float]
    _wake: asyncio.Event

    # ---- events and state ---------------------------------------------------------------------------------

    def _emit(self, type: str, task: str | None = None, **data: Any) -> None:
        agent = self.tasks[task].agent if task is not None else None
        self.engine.recorder.emit(self.id, type, task=task, agent=agent, data=data)

    async def _set_task(self, key: str, **changes: Any) -> Task:
        """Write a transition to the task table, then mirror it here (no read-back: this is the hot path)."""
        await self.engine.stores.tasks.set(self.id, key, **changes)
        task = self.tasks[key].model_copy(update=changes)
        self.tasks[key] = task
        return task

    async def _set_workflow(self, **changes: Any) -> None:
        self.workflow = await self.engine.stores.workflows.update(self.id, **changes)
        self.status = self.workflow.status

    @property
    def paused(self) -> bool:
        return not self.gate.is_set()

    async def checkpoint(self, reason: str = "manual", task: str | None = None) -> Checkpoint:
        """A checkpoint now: the completed ``task`` only (a delta), or every task when ``task`` is None."""
        self._checkpoint_number += 1
        taken = await checkpoints.take(
            self.engine.stores,
            self.id,
            self._checkpoint_number,
            self.tasks,
            reason=reason,
            task=task,
            changed=None if task is None else [task],
            event_seq=self.engine.recorder.last_seq(self.id),
        )
        self._emit("checkpoint.created", task, checkpoint=taken.id, number=taken.number, reason=reason)
        return taken

    async def pause(self) -> None:
        if self.paused:
            return
        self.gate.clear()
        for key in list(self._timeouts):
            self._freeze(key)
        for key in list(self._running):
            ctx = self._contexts.get(key)
            if ctx is not None and ctx.graph is not None:
                for listener in list(ctx.graph.pause_listeners):
                    listener()  # a graph drains: it stops at its next step boundary
            if key in self._sandboxes:
                await self._sandboxes[key].pause()
            if self.tasks[key].status is TaskStatus.RUNNING:
                await self._set_task(key, status=TaskStatus.PAUSED)
                self._emit("task.paused", key)
        await self._set_workflow(status=WorkflowStatus.PAUSED)
        self._emit("workflow.paused")

    async def resume(self) -> None:
        if not self.paused:
            return
        for key in list(self._timeouts):
            if key not in self._waiting_since:  # a task waiting for a person keeps its clock stopped
                self._thaw(key)
        for key in list(self._running):
            if key in self._sandboxes:
                await self._sandboxes[key].resume()
            if self.tasks[key].status is TaskStatus.PAUSED:
                await self._set_task(key, status=TaskStatus.RUNNING)
                self._emit("task.resumed", key)
        self.gate.set()
        await self._set_workflow(status=WorkflowStatus.RUNNING)
        self._emit("workflow.resumed")
        self._wake.set()

    async def cancel(self) -> None:
        self.cancelled = True
        for key, handle in list(self._running.items()):
            if key in self._sandboxes and self._sandboxes[key].paused:
                await self._sandboxes[key].resume()
            if not handle.cancelling():
                handle.cancel()
        self.gate.set()
        self._wake.set()
        await self.finished.wait()

    async def retry(self, key: str, *, fresh: bool = True) -> None:
        """Run ``key`` again (and what it blocked). ``fresh``: a finished graph task starts on a new thread;
        otherwise it continues from its thread's head (a fork made by time travel)."""
        task = self.tasks.get(key)
        if task is None:
            raise ControlError(f"workflow {self.id} has no task {key!r}")
        if key in self._running:
            raise ControlError(f"task {key} is running; cancel the workflow or wait for it")
        if fresh and task.status is TaskStatus.COMPLETED:
            thread = await thread_for_rerun(self.engine, self.id, task, before=None)
            if thread is not None:
                await self._set_task(key, thread=thread)
        await self._reset([key, *sorted(self.spec.downstream(key))], only_unfinished_downstream=key)
        self._stop_new = False
        self._emit("task.queued", key, retry=True)
        self._wake.set()

    async def _reset(self, keys: list[str], only_unfinished_downstream: str | None = None) -> None:
        for k in keys:
            if k != only_unfinished_downstream and self.tasks[k].status is TaskStatus.COMPLETED:
                continue
            await self._set_task(k, status=TaskStatus.PENDING, error=None, output=None, progress=None, finished_at=None)

    async def rollback(self, checkpoint: Checkpoint) -> None:
        for key, handle in list(self._running.items()):
            await self._set_task(key, status=TaskStatus.PENDING)  # so the cancelled attempt is not marked cancelled
            handle.cancel()
        if self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)
        await apply_rollback(self.engine, self.id, checkpoint, self.tasks)
        self._stop_new = False
        latest = await self.engine.stores.checkpoints.latest(self.id)
        self._checkpoint_number = latest.number if latest else self._checkpoint_number
        self._wake.set()

    def _freeze(self, key: str) -> None:
        """Stop a task's timeout clock (paused, or waiting for a person): time spent so does not count."""
        deadline = self._timeouts.get(key)
        when = deadline.when() if deadline is not None else None
        if deadline is None or when is None or key in self._frozen or deadline.expired():
            return
        self._frozen[key] = when - asyncio.get_running_loop().time()
        deadline.reschedule(None)

    def _thaw(self, key: str) -> None:
        remaining = self._frozen.pop(key, None)
        deadline = self._timeouts.get(key)
        if remaining is not None and deadline is not None:
            deadline.reschedule(asyncio.get_running_loop().time() + remaining)

    async def _waiting(self, key: str, waiting: bool) -> None:
        """A task waits for a person: shown as ``waiting``, and the wait does not count against its timeout."""
        if waiting:
            self._waiting_since[key] = time.monotonic()
            self._freeze(key)
            await self._set_task(key, status=TaskStatus.WAITING)
            self._emit("task.waiting", key)
            return
        self._waiting_since.pop(key, None)
        if not self.paused:
            self._thaw(key)
        await self._set_task(key, status=TaskStatus.PAUSED if self.paused else TaskStatus.RUNNING)
        self._emit("task.paused" if self.paused else "task.resumed", key)


async def apply_rollback(engine: Engine, workflow_id: str, checkpoint: Checkpoint, tasks: dict[str, Task]) -> None:
    """Restore task states from ``checkpoint``, forget memories written after it, record it (history is kept)."""
    states, _agent_states = checkpoints.state_at(await engine.stores.checkpoints.list(workflow_id), checkpoint.number)
    rerun = []
    for key in tasks:
        was_running = tasks[key].status is not TaskStatus.PENDING
        tasks[key] = await engine.stores.tasks.update(workflow_id, key, **checkpoints.restored_state(states, key))
        if tasks[key].status is TaskStatus.PENDING:
            rerun.append(key)
            if was_running or tasks[key].attempts:  # a graph thread goes back to where it was then
                thread = await thread_for_rerun(engine, workflow_id, tasks[key], before=checkpoint.created_at)
                if thread is not None:
                    tasks[key] = await engine.stores.tasks.update(workflow_id, key, thread=thread)
    forgotten = await engine.stores.memories.delete_for_workflow_after(workflow_id, checkpoint.created_at)
    engine.recorder.emit(
        workflow_id,
        "workflow.rolled_back",
        data={
            "checkpoint": checkpoint.id,
            "number": checkpoint.number,
            "rerun": rerun,
            "memories_forgotten": forgotten,
        },
    )
    latest = await engine.stores.checkpoints.latest(workflow_id)
    number = (latest.number if latest else 0) + 1
    taken = await checkpoints.take(
        engine.stores, workflow_id, number, tasks, reason=f"rolled back to #{checkpoint.number}",
        event_seq=engine.recorder.last_seq(workflow_id),
    )  # fmt: skip
    engine.recorder.emit(
        workflow_id, "checkpoint.created", data={"checkpoint": taken.id, "number": number, "reason": taken.reason}
    )
