"""The controls acting on a running workflow — pause, resume, cancel, retry, rollback, checkpoints — the timeout
clock that stops while a task is paused or waiting for a person, and the state changes they share with the
coordinator loop.

``RunControls`` is a part of ``WorkflowRun`` (engine/run.py), kept in its own room so each stays readable. Each
control has this one implementation: a workflow nobody runs is adopted first (``Engine._adopt`` rebuilds a run
from its rows without starting it), then controlled like a live one.

Every state change goes through ``_transition``: checked against ``coordinator.ALLOWED`` and applied in memory
in one synchronous step, then appended to the state writer. A control that awaits (freezing processes, reading
LangGraph checkpoints) re-checks after the await, so a pause racing a completion can no longer write ``paused``
over ``completed``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from db.models import Checkpoint, EventType, Memory, Task, TaskStatus, Workflow, WorkflowStatus
from engine import checkpoints
from engine.coordinator import DagState, may_follow
from engine.errors import ControlError
from engine.graph.threads import thread_for_rerun

if TYPE_CHECKING:
    from engine.agents import TaskContext
    from engine.events import EventRecorder
    from engine.sandbox import Sandbox
    from engine.services import RunServices
    from engine.spec import WorkflowSpec
    from engine.writer import StateWriter


class RunControls:
    """Controls of ``WorkflowRun``, and the state writes they share with the coordinator loop. The attributes
    below are the run's own (set in ``WorkflowRun.__init__``)."""

    engine: RunServices
    recorder: EventRecorder
    writer: StateWriter
    id: str
    workflow: Workflow
    status: WorkflowStatus
    spec: WorkflowSpec
    tasks: dict[str, Task]
    dag: DagState
    gate: asyncio.Event
    cancelled: bool
    finished: asyncio.Event
    _stop_new: bool
    _checkpoint_number: int
    _checkpoint_id: str | None
    _unsealed: list[str]
    _running: dict[str, asyncio.Task[None]]
    _resetting: set[str]
    _sandboxes: dict[str, Sandbox]
    _timeouts: dict[str, asyncio.Timeout]
    _contexts: dict[str, TaskContext]
    _held_events: list[tuple[str, str | None, dict[str, Any]]] | None
    _frozen: dict[str, float]
    _waiting_since: dict[str, float]
    _wake: asyncio.Event
    _held_by: int
    ending: bool

    def _rebuild(self) -> None:
        raise NotImplementedError  # WorkflowRun's

    # ---- events and state ---------------------------------------------------------------------------------

    def _emit(self, type: str, task: str | None = None, **data: Any) -> None:
        if self._held_events is not None:  # an adopted run not started yet: its start event goes first
            self._held_events.append((type, task, data))
            return
        agent = self.tasks[task].agent if task is not None else None
        self.recorder.emit(self.id, type, task=task, agent=agent, data=data)

    def _transition(
        self, key: str, status: TaskStatus, *, force: bool = False, write: bool = True, **changes: Any
    ) -> bool:
        """Move task ``key`` to ``status`` (with ``changes``) if the state machine allows it from where it is now;
        returns whether it did. ``force`` skips the check (resets to pending, skipping on cancel); ``write=False``
        leaves writing it to the caller."""
        task = self.tasks[key]
        if not force and not may_follow(task.status, status):
            return False
        # Only what really changes is written (clearing an error that is not there costs a value to store).
        changed: dict[str, Any] = {"status": status}
        for name, value in changes.items():
            if getattr(task, name) != value:
                changed[name] = value
                setattr(task, name, value)
        task.status = status
        if write:
            self.writer.task(self.id, key, changed)
        return True

    def _update(self, key: str, **changes: Any) -> None:
        """Change fields of task ``key`` other than its status."""
        task = self.tasks[key]
        for name, value in changes.items():
            setattr(task, name, value)
        self.writer.task(self.id, key, changes)

    def _set_workflow(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.workflow, name, value)
        self.status = self.workflow.status
        self.writer.workflow(self.id, changes)

    @property
    def paused(self) -> bool:
        return not self.gate.is_set()

    def is_task_running(self, key: str) -> bool:
        """Whether an attempt of task ``key`` runs now."""
        return key in self._running

    def sandbox_pids(self) -> list[tuple[str, list[int]]]:
        """(task key, its sandbox's live processes) for each task whose sandbox has some: for the metrics."""
        out = []
        for key, sandbox in list(self._sandboxes.items()):
            pids = sandbox.pids()
            if pids:
                out.append((key, pids))
        return out

    def _checkpoint(
        self, reason: str = "manual", task: str | None = None, changed: list[str] | None = None
    ) -> Checkpoint:
        """A checkpoint now: a delta of the ``changed`` tasks, or every task when ``changed`` is None."""
        self._checkpoint_number += 1
        taken = checkpoints.make(
            self.id,
            self._checkpoint_number,
            self.tasks,
            reason=reason,
            task=task,
            changed=changed,
            event_seq=self.recorder.last_seq(self.id),
        )
        self.writer.checkpoint(taken)
        self._checkpoint_id = taken.id
        self._emit(EventType.CHECKPOINT_CREATED, task, checkpoint=taken.id, number=taken.number, reason=reason)
        return taken

    def _seal_checkpoint(self) -> None:
        """The tasks completed since the last checkpoint get one (a delta). Called before each write, so
        completions that land in the same write (a few milliseconds) share a checkpoint: one per completion when
        tasks take longer than a write, one per write when hundreds of tiny tasks complete at once (a row per
        completion was a third of the engine's write cost on a 1,000-task DAG)."""
        keys, self._unsealed = self._unsealed, []
        if not keys:
            return
        if len(keys) == 1:
            self._checkpoint(reason=f"{keys[0]} completed", task=keys[0], changed=keys)
            return
        named = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        self._checkpoint(reason=f"{len(keys)} tasks completed: {named}", changed=keys)

    async def checkpoint(self, reason: str = "manual", task: str | None = None) -> Checkpoint:
        """A full checkpoint now (after one for completions not checkpointed yet), stored when this returns."""
        self._seal_checkpoint()
        taken = self._checkpoint(reason, task)
        await self.recorder.flush()
        return taken

    # ---- memory ---------------------------------------------------------------------------------------------

    async def _remember(
        self,
        key: str,
        attempt: int,
        content: str,
        memory_type: str,
        metadata: dict[str, Any],
        graph_step: int | None,
        expires_in: timedelta | None,
    ) -> Memory:
        """Store what task ``key`` remembers, with where it came from, and say so (``memory.written``)."""
        memory = await self.engine.memory.remember(
            self.tasks[key].agent, content, memory_type, metadata, workflow=self.id, task=key, attempt=attempt,
            graph_step=graph_step, checkpoint=self._checkpoint_id, expires_in=expires_in,
        )  # fmt: skip
        preview = memory.content if len(memory.content) <= 200 else memory.content[:199] + "…"
        self._emit(EventType.MEMORY_WRITTEN, key, memory=memory.id, kind=memory.memory_type, content=preview)
        return memory

    # ---- pause, resume, cancel ----------------------------------------------------------------------------

    async def pause(self) -> None:
        if self.paused:
            return
        self.gate.clear()
        for key in list(self._timeouts):
            self._freeze(key)
        running = list(self._running)
        for key in running:
            ctx = self._contexts.get(key)
            if ctx is not None and ctx.graph is not None:
                for listener in list(ctx.graph.pause_listeners):
                    listener()  # a graph drains: it stops at its next step boundary
            # Only a running task: one waiting for a person or a retry stays so, a finished one stays finished.
            if self.tasks[key].status is TaskStatus.RUNNING and self._transition(key, TaskStatus.PAUSED):
                self._emit(EventType.TASK_PAUSED, key)
        self._set_workflow(status=WorkflowStatus.PAUSED)
        self._emit(EventType.WORKFLOW_PAUSED)
        # Frozen after the states are recorded: a task finishing meanwhile goes from paused to completed.
        await asyncio.gather(*(self._sandboxes[key].pause() for key in running if key in self._sandboxes))
        await self.recorder.flush()

    async def resume(self) -> None:
        if not self.paused:
            return
        for key in list(self._timeouts):
            if key not in self._waiting_since:  # a task waiting for a person keeps its clock stopped
                self._thaw(key)
        running = list(self._running)
        await asyncio.gather(*(self._sandboxes[key].resume() for key in running if key in self._sandboxes))
        for key in running:
            if self.tasks[key].status is TaskStatus.PAUSED and self._transition(key, TaskStatus.RUNNING):
                self._emit(EventType.TASK_RESUMED, key)
        self.gate.set()
        self._set_workflow(status=WorkflowStatus.RUNNING)
        self._emit(EventType.WORKFLOW_RESUMED)
        self._wake.set()
        await self.recorder.flush()

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

    # ---- retry and rollback -------------------------------------------------------------------------------

    async def retry(self, key: str, *, fresh: bool = True) -> None:
        """Run ``key`` again (and what it blocked). ``fresh``: a finished graph task starts on a new thread;
        otherwise it continues from its thread's head (a fork made by time travel)."""
        task = self.tasks.get(key)
        if task is None:
            raise ControlError(f"workflow {self.id} has no task {key!r}")
        if key in self._running:
            raise ControlError(f"task {key} is running; cancel the workflow or wait for it")
        self._held_by += 1  # the run may neither start nor end tasks while we read the thread
        try:
            thread = None
            if fresh and task.status is TaskStatus.COMPLETED:
                thread = await thread_for_rerun(self.engine, self.id, task, before=None)
            if thread is not None:
                self._update(key, thread=thread)
            self._reset([key, *sorted(self.spec.downstream(key))], only_unfinished_downstream=key)
            self._stop_new = False
            self._emit(EventType.TASK_QUEUED, key, retry=True)
            self._rebuild()
        finally:
            self._held_by -= 1
            self._wake.set()
        await self.recorder.flush()

    def _reset(self, keys: list[str], only_unfinished_downstream: str | None = None) -> None:
        for k in keys:
            if k in self._running:
                continue
            if k != only_unfinished_downstream and self.tasks[k].status is TaskStatus.COMPLETED:
                continue
            self._transition(
                k, TaskStatus.PENDING, force=True, error=None, output=None, progress=None, finished_at=None
            )

    async def rollback(self, checkpoint: Checkpoint) -> None:
        self._seal_checkpoint()
        # The run may neither start nor end tasks until the rollback is applied: cancelling frees slots, and a
        # run with nothing running would otherwise end (or start a waiting task) in the middle of it.
        self._held_by += 1
        try:
            running = dict(self._running)
            for key in running:
                # Back to pending first, so the cancelled attempt is recorded as reset, not as cancelled.
                self._resetting.add(key)
                self._transition(key, TaskStatus.PENDING, force=True)
                running[key].cancel()
            try:
                while self._running:  # their done-callbacks remove them
                    await asyncio.gather(*self._running.values(), return_exceptions=True)
                    await asyncio.sleep(0)
            finally:
                self._resetting.difference_update(running)
            await apply_rollback(self.engine, self.id, checkpoint, self.tasks)
            self._stop_new = False
            latest = await self.engine.stores.checkpoints.latest(self.id)
            self._checkpoint_number = latest.number if latest else self._checkpoint_number
            self._checkpoint_id = latest.id if latest else self._checkpoint_id
            self._rebuild()
        finally:
            self._held_by -= 1
            self._wake.set()

    # ---- the timeout clock --------------------------------------------------------------------------------

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
        if remaining is not None and deadline is not None and not deadline.expired():
            deadline.reschedule(asyncio.get_running_loop().time() + remaining)

    async def _waiting(self, key: str, waiting: bool) -> None:
        """A task waits for a person: shown as ``waiting``, and the wait does not count against its timeout."""
        if waiting:
            self._waiting_since[key] = time.monotonic()
            self._freeze(key)
            if self._transition(key, TaskStatus.WAITING):
                self._emit(EventType.TASK_WAITING, key)
            await self.recorder.flush()
            return
        self._waiting_since.pop(key, None)
        if not self.paused:
            self._thaw(key)
        status = TaskStatus.PAUSED if self.paused else TaskStatus.RUNNING
        if self._transition(key, status):
            self._emit(EventType.TASK_PAUSED if self.paused else EventType.TASK_RESUMED, key)


async def apply_rollback(engine: RunServices, workflow_id: str, checkpoint: Checkpoint, tasks: dict[str, Task]) -> None:
    """Restore task states from ``checkpoint``, hide the memories that leave the workflow's history (and show
    those that come back, on a roll forward), record it (history is kept).

    ``tasks`` (the run's) is updated in place."""
    writer = engine.recorder.writer
    history = await engine.stores.checkpoints.list(workflow_id)
    states, _agent_states = checkpoints.state_at(history, checkpoint.number)
    rerun = []
    from_scratch: set[str] = set()  # re-run from their start (no graph thread resumed): they remember again
    for key, task in tasks.items():
        was_running = task.status is not TaskStatus.PENDING
        restored = checkpoints.restored_state(states, key)
        if restored["status"] is TaskStatus.PENDING:
            rerun.append(key)
            thread = None
            if was_running or task.attempts:  # a graph thread goes back to where it was then
                thread = await thread_for_rerun(engine, workflow_id, task, before=checkpoint.created_at)
                if thread is not None:
                    restored["thread"] = thread
            if thread is not None or not task.thread:  # a fresh thread starts the graph from its beginning
                from_scratch.add(key)
        for name, value in restored.items():
            setattr(task, name, value)
        writer.task(workflow_id, key, restored)
    await engine.recorder.flush()
    latest = await engine.stores.checkpoints.latest(workflow_id)
    number = (latest.number if latest else 0) + 1
    taken = checkpoints.make(
        workflow_id, number, tasks, reason=f"rolled back to #{checkpoint.number}",
        event_seq=engine.recorder.last_seq(workflow_id),
    )  # fmt: skip
    taken.rolled_back_to = checkpoint.number
    hidden, shown = await engine.memory.follow_rollback(workflow_id, taken, history, from_scratch)
    engine.recorder.emit(
        workflow_id,
        EventType.WORKFLOW_ROLLED_BACK,
        data={
            "checkpoint": checkpoint.id,
            "number": checkpoint.number,
            "rerun": rerun,
            "memories_hidden": hidden,
            "memories_restored": shown,
        },
    )
    await engine.recorder.flush()
    taken.event_seq = engine.recorder.last_seq(workflow_id)
    writer.checkpoint(taken)
    engine.recorder.emit(
        workflow_id,
        EventType.CHECKPOINT_CREATED,
        data={"checkpoint": taken.id, "number": number, "reason": taken.reason},
    )
    await engine.recorder.flush()
