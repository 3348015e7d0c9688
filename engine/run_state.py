"""The state of one workflow being run, and the one way it changes.

``RunState`` owns everything a run knows — its tasks and their states, the DAG's counts, which attempts run now
and in which sandboxes, the pause gate, the timeout clocks, the checkpoint numbering — and the few methods that
change it. The controls (``engine.run_controls.RunControls``) and the coordinator loop (``engine.run.WorkflowRun``)
are built on it and declare no state of their own that the other needs.

Every state change goes through ``_transition``: checked against ``coordinator.ALLOWED`` and applied in memory
in one synchronous step, then appended to the state writer with its event (``_emit``); nothing here waits for
the database.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from db.models import Checkpoint, EventType, Task, TaskStatus, Workflow, WorkflowStatus
from engine import checkpoints
from engine.coordinator import BLOCKING, DagState, may_follow

if TYPE_CHECKING:
    from engine.agents import TaskContext
    from engine.sandbox import Sandbox
    from engine.services import RunServices
    from engine.spec import WorkflowSpec


def now() -> datetime:
    return datetime.now(UTC)


class RunState:
    """What one run knows, and the state changes the loop and the controls share."""

    def __init__(
        self, engine: RunServices, workflow: Workflow, spec: WorkflowSpec, tasks: dict[str, Task], adopted: bool = False
    ) -> None:
        """``adopted``: rebuilt from the database for a control to act on before it starts (``Engine._adopt``);
        the events of that control are held until the run's start event, so they belong to the run they start."""
        self.engine = engine
        self.recorder = engine.recorder
        self.writer = engine.recorder.writer
        self.workflow = workflow
        self.id = workflow.id
        self.status: WorkflowStatus = workflow.status
        self.spec = spec
        self.tasks = tasks
        self.dag = DagState(
            spec.topological_order(),
            {t.id: t.depends_on for t in spec.tasks},
            {t.id: t.agent for t in spec.tasks},
        )
        self.gate = asyncio.Event()  # set while the run is not paused
        self.gate.set()
        self.cancelled = False
        #: The engine is closing on purpose (the dashboard quits): the run ends as ``stopped``, resumable; the
        #: attempts it interrupts are cancelled but their downstream is not skipped.
        self.stopping = False
        self.finished = asyncio.Event()
        #: Set once the run stopped scheduling and is storing its end: controls then wait for ``finished``.
        self.ending = False
        self._stop_new = False  # fail_fast tripped
        self._wake = asyncio.Event()  # the coordinator loop looks again
        self._held_by = 0  # controls (rollback, retry) in the middle of changing tasks
        self._held_events: list[tuple[str, str | None, dict[str, Any]]] | None = [] if adopted else None
        # attempts running now, and what they run in
        self._running: dict[str, asyncio.Task[None]] = {}
        self._resetting: set[str] = set()  # running tasks a rollback is sending back to pending
        self._sandboxes: dict[str, Sandbox] = {}
        self._releasing: set[asyncio.Future[None]] = set()  # finished tasks' sandboxes being closed
        self._contexts: dict[str, TaskContext] = {}
        # timeout clocks
        self._timeouts: dict[str, asyncio.Timeout] = {}
        self._frozen: dict[str, float] = {}  # task key -> seconds its timeout had left when its clock stopped
        self._waiting_since: dict[str, float] = {}
        # queueing: a task queued in memory is written only if it does not start at once
        self._queued_at: dict[str, float] = {}
        self._unwritten_queued: set[str] = set()
        # checkpoints
        self._checkpoint_number = 0
        self._checkpoint_id: str | None = None  # the newest checkpoint: what a memory written now follows
        self._unsealed: list[str] = []  # completed since the last checkpoint

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
            if sandbox.remote:  # its processes are another machine's
                continue
            pids = sandbox.pids()
            if pids:
                out.append((key, pids))
        return out

    # ---- what may start -----------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Recount what may start (at start, and after a retry or rollback reset tasks)."""
        self._mark_ready(self.dag.rebuild(self.tasks, running=self._running))
        for key, task in self.tasks.items():
            if task.status in BLOCKING:
                self._block_downstream(key)

    def _mark_ready(self, keys: list[str]) -> None:
        """Tasks whose dependencies completed are queued. Their ``queued`` row is written only if they do not start
        in this pass of the loop (``_write_held``): one that starts has ``running`` written instead."""
        at = time.monotonic()
        for key in keys:
            if self._transition(key, TaskStatus.QUEUED, write=False):
                self._queued_at[key] = at
                self._unwritten_queued.add(key)
                self._emit(EventType.TASK_QUEUED, key)

    def _write_held(self) -> None:
        for key in self._unwritten_queued:
            if key not in self._running and self.tasks[key].status is TaskStatus.QUEUED:
                self.writer.task(self.id, key, {"status": TaskStatus.QUEUED})
        self._unwritten_queued.clear()

    def _skip(self, key: str, reason: str, force: bool = False) -> None:
        if self._transition(key, TaskStatus.SKIPPED, force=force, error=reason, finished_at=now()):
            self._emit(EventType.TASK_SKIPPED, key, reason=reason)

    def _block_downstream(self, key: str) -> None:
        """``key`` will not complete: skip every task waiting on it, directly or through others."""
        for dependent, upstream in self.dag.blocked_by(key, self.tasks):
            self._skip(dependent, f"upstream {upstream} {self.tasks[upstream].status.value}")

    # ---- checkpoints --------------------------------------------------------------------------------------

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
