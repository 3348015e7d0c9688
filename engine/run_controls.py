"""The controls acting on a running workflow — pause, resume, cancel, retry, rollback, checkpoints — and a
task's wait for a person, which stops its timeout clock.

``RunControls`` builds on ``engine.run_state.RunState``, which owns the run's state; ``WorkflowRun``
(engine/run.py) adds the coordinator loop. Each control has this one implementation: a workflow nobody runs is
adopted first (``Engine._adopt`` rebuilds a run from its rows without starting it), then controlled like a live
one. A control that awaits (freezing processes, reading LangGraph checkpoints) re-checks after the await, so a
pause racing a completion can no longer write ``paused`` over ``completed``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from db.models import Checkpoint, EventType, Memory, Task, TaskStatus, WorkflowStatus
from engine import checkpoints
from engine.errors import ControlError
from engine.graph.threads import thread_for_rerun
from engine.run_state import RunState

if TYPE_CHECKING:
    from engine.services import RunServices


class RunControls(RunState):
    """The controls of one run (see the module's docstring)."""

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

    async def retry(self, key: str, *, fresh: bool = True, downstream: bool = False) -> None:
        """Run ``key`` again (and what it blocked; with ``downstream``, every task after it, completed ones too).
        ``fresh``: a finished graph task starts on a new thread; otherwise it continues from its thread's head (a
        fork made by time travel). A completed graph task downstream always starts on a new thread."""
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
            later = sorted(self.spec.downstream(key))
            if downstream:
                for after in later:
                    done = self.tasks[after]
                    if done.status is TaskStatus.COMPLETED and after not in self._running:
                        rerun = await thread_for_rerun(self.engine, self.id, done, before=None)
                        if rerun is not None:
                            self._update(after, thread=rerun)
            self._reset([key, *later], only_unfinished_downstream=None if downstream else key)
            self._stop_new = False
            self._emit(EventType.TASK_QUEUED, key, retry=True)
            self._rebuild()
        finally:
            self._held_by -= 1
            self._wake.set()
        await self.recorder.flush()

    def _reset(self, keys: list[str], only_unfinished_downstream: str | None = None) -> None:
        """Back to pending: ``keys`` not running; with ``only_unfinished_downstream``, of the others than that
        one only those not completed."""
        for k in keys:
            if k in self._running:
                continue
            if (
                only_unfinished_downstream is not None
                and k != only_unfinished_downstream
                and self.tasks[k].status is TaskStatus.COMPLETED
            ):
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

    # ---- waiting for a person ------------------------------------------------------------------------------

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
