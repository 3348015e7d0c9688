"""One workflow being run: the coordinator loop that starts ready tasks and runs each task's attempts.

Every ready task starts at once, up to the workflow's ``concurrency`` and each agent's ``concurrency``
(``engine.coordinator.DagState`` answers in O(1) per task). Each task runs its attempts under a timeout (time
spent paused does not count) with retries and exponential backoff (tenacity).

Nothing here waits for the database: a transition is checked and applied in memory in one synchronous step
(compare-and-set against ``coordinator.ALLOWED``) and appended to the state writer's log with its event; the
writer stores a tick's changes in one transaction and publishes the events after that (``engine.writer``). The
run waits for the writer only when it ends, and holds back new tasks while the writer's backlog is full.

The run's state and the one way it changes are in ``engine.run_state``; the controls (pause, resume, cancel,
retry, rollback, checkpoints) in ``engine.run_controls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from db.models import WORKFLOW_END_EVENTS, EventType, Task, TaskStatus, Workflow, WorkflowStatus
from engine.agents import Agent, TaskContext, check_agents
from engine.coordinator import Limits
from engine.errors import TaskFailed
from engine.graph.support import GraphSupport, default_thread
from engine.run_controls import RunControls
from engine.run_state import now as _now
from engine.sandbox import Sandbox, SandboxError, make_sandbox
from engine.spec import WorkflowSpec

if TYPE_CHECKING:
    from engine.services import RunServices

log = logging.getLogger(__name__)

#: A task's ``progress`` field is written at most this often (each report is still an event).
PROGRESS_WRITE_S = 2.0


class _Attempt(Exception):
    """Internal: one attempt failed in a way worth retrying (wraps TaskFailed and timeouts)."""


class WorkflowRun(RunControls):
    """The coordinator loop of one run, and each task's attempts (see the module's docstring)."""

    def __init__(
        self, engine: RunServices, workflow: Workflow, spec: WorkflowSpec, tasks: dict[str, Task], adopted: bool = False
    ) -> None:
        super().__init__(engine, workflow, spec, tasks, adopted)
        self.agents: dict[str, Agent] = check_agents(spec)
        self._task_specs = {task_spec.id: task_spec for task_spec in spec.tasks}
        self._limits = Limits(spec.concurrency, {name: agent.concurrency for name, agent in spec.agents.items()})
        self._workdirs: dict[str, Path] = {}
        self._progress_written: dict[str, float] = {}
        self._unwritten_progress: set[str] = set()

    # ---- the coordinator loop -----------------------------------------------------------------------------

    async def run(self, resumed: bool = False) -> WorkflowStatus:
        """Run until every task is finished or the workflow is cancelled; returns the final status."""
        if resumed:
            latest = await self.engine.stores.checkpoints.latest(self.id)
            self._checkpoint_number = latest.number if latest else 0
            self._checkpoint_id = latest.id if latest else None
        # Cancelled before its first step, with nothing done to it (a stopped workflow adopted to be cancelled):
        # straight to its end. A run a control already changed (held events) starts, so that change is recorded.
        held, self._held_events = self._held_events or [], None
        started = not self.cancelled or bool(held)
        if started:
            self._set_workflow(status=WorkflowStatus.RUNNING, started_at=self.workflow.started_at or _now())
            self._emit(EventType.WORKFLOW_RESUMED if resumed else EventType.WORKFLOW_STARTED, tasks=len(self.tasks))
            for kind, key, data in held:  # what a control did to the adopted run, now part of this run
                self._emit(kind, key, **data)
        unhook = self.writer.add_before_batch(self._before_write)
        stopped = False
        try:
            if started:
                await self._schedule()
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            stopped = True  # the engine is closing on purpose: recorded below, after the cleanup
        finally:
            self.ending = True  # controls arriving from now on wait for the end and treat the workflow as stopped
            for handle in list(self._running.values()):
                # Once only: a second cancel would interrupt the first one's cleanup (LangGraph cancels its
                # running nodes while it exits; interrupted, it leaves them running unowned).
                if not handle.cancelling():
                    handle.cancel()
            while self._running:  # their done-callbacks remove them
                await asyncio.gather(*self._running.values(), return_exceptions=True)
                await asyncio.sleep(0)
            for sandbox in self._sandboxes.values():
                with contextlib.suppress(Exception):
                    await sandbox.close()
            if self._releasing:
                await asyncio.gather(*self._releasing, return_exceptions=True)
            unhook()
            self._seal_checkpoint()  # also when the engine is closing: what completed keeps its checkpoint
        if stopped:
            return await self._record_stop()
        if self.cancelled:  # what never ran is skipped, recorded before the workflow's own final event
            for key, task in self.tasks.items():
                if not task.status.finished:
                    self._skip(key, "workflow cancelled", force=True)
        final = self._final_status()
        self._set_workflow(status=final, finished_at=_now(), lease_until=None, owner=None)
        failed = [k for k, t in self.tasks.items() if t.status is TaskStatus.FAILED]
        self._emit(WORKFLOW_END_EVENTS[final], failed=failed, **({} if started else {"while": "stopped"}))
        await self.recorder.flush()
        self.finished.set()
        self.engine.forget(self)
        return final

    async def _record_stop(self) -> WorkflowStatus:
        """The engine closed on purpose while this ran: stored as ``stopped`` with no owner, so it is resumable at
        once and nobody mistakes it for a crash; its clock stops here."""
        done = sum(1 for t in self.tasks.values() if t.status is TaskStatus.COMPLETED)
        self._set_workflow(status=WorkflowStatus.STOPPED, lease_until=None, owner=None)
        self._emit(EventType.WORKFLOW_STOPPED, completed=done, tasks=len(self.tasks))
        await self.recorder.flush()
        self.finished.set()
        self.engine.forget(self)
        return WorkflowStatus.STOPPED

    def _final_status(self) -> WorkflowStatus:
        if self.cancelled:
            return WorkflowStatus.CANCELLED
        if any(t.status is TaskStatus.FAILED for t in self.tasks.values()):
            return WorkflowStatus.FAILED
        if all(t.status is TaskStatus.COMPLETED for t in self.tasks.values()):
            return WorkflowStatus.COMPLETED
        return WorkflowStatus.FAILED

    async def _schedule(self) -> None:
        self._rebuild()
        loop = asyncio.get_running_loop()
        while not self.cancelled:
            self._wake.clear()
            if self._held_by:  # a control is changing tasks across awaits: neither start nor end meanwhile
                await self._wake.wait()
                continue
            if not self.writer.writable:  # the database is behind: start nothing until it catches up
                await self.writer.wait_writable()
                continue
            if not self.paused and not self._stop_new:
                while (key := self.dag.next_startable(self._limits, self.tasks)) is not None:
                    self.dag.started(key)
                    handle = loop.create_task(self._run_task(key), name=f"agentdeck-task-{self.id}-{key}")
                    # Bookkeeping in a done-callback, not in _run_task: a task cancelled before it ever ran (a
                    # fail_fast sibling, a rollback) never executes the coroutine's finally.
                    handle.add_done_callback(functools.partial(self._task_done, key))
                    self._running[key] = handle
            if self._unwritten_queued:
                self._write_held()
            if not self._running and (self._stop_new or not self.dag.has_ready()):
                for key in self.spec.topological_order():
                    if self.tasks[key].status in (TaskStatus.PENDING, TaskStatus.QUEUED):
                        reason = "an earlier task failed (fail_fast)" if self._stop_new else "never became ready"
                        self._skip(key, reason)
                return
            await self._wake.wait()

    # ---- one task -----------------------------------------------------------------------------------------

    def _sandbox(self, key: str) -> Sandbox:
        if key not in self._sandboxes:
            tspec = self._task_specs[key]
            kind = tspec.effective_sandbox(self.spec.defaults, fallback=self.engine.settings.sandbox)
            if kind == "e2b":
                pool = self.engine.e2b_pool()
                shared = pool.settings.scope == "agent"
                self._sandboxes[key] = make_sandbox(
                    kind,
                    self._workdir(key),
                    pool=pool,
                    # One remote sandbox per task, or per agent (and network setting) of this workflow.
                    key=f"{self.id}/{tspec.agent}/{tspec.network}" if shared else None,
                    network=tspec.network,
                    metadata={"agentdeck_workflow": self.id, "agentdeck_task": key, "agentdeck_agent": tspec.agent},
                )
            elif kind == "worker":
                # Here, not at the top: engine.workers loads redis' client, only for workflows that use workers.
                from engine.workers.sandbox import WorkerSandbox

                self._sandboxes[key] = WorkerSandbox(
                    self._workdir(key),
                    dispatcher=self.engine.worker_dispatcher(),
                    workflow=self.id,
                    task=key,
                    attempt=lambda: self.tasks[key].attempts,
                    on_redelivered=lambda reason: self._redelivered(key, reason),
                    on_taken=lambda worker: self._emit(
                        EventType.TASK_ASSIGNED, key, attempt=self.tasks[key].attempts, worker=worker
                    ),
                    secrets=tspec.secrets,
                )
            else:
                self._sandboxes[key] = make_sandbox(kind, self._workdir(key), hidden=self.engine.sandbox_hidden)
        return self._sandboxes[key]

    def _redelivered(self, key: str, reason: str) -> None:
        """A worker died running task ``key``'s command and another took it over (it runs again from the start):
        recorded as a retry of the same attempt (``task.retrying`` with ``redelivered``), then running again."""
        was = self.tasks[key].status
        if self._transition(key, TaskStatus.RETRYING, error=reason):
            attempt = self.tasks[key].attempts
            self._emit(EventType.TASK_RETRYING, key, attempt=attempt, error=reason, delay_s=0.0, redelivered=True)
            self._transition(key, was if was is TaskStatus.PAUSED else TaskStatus.RUNNING, error=None)

    def _release_sandbox(self, key: str) -> None:
        """A finished task's per-task remote sandbox is closed now (it costs while it lives), not at the run's end."""
        sandbox = self._sandboxes.get(key)
        if sandbox is None or not sandbox.release_when_done or not self.tasks[key].status.finished:
            return
        del self._sandboxes[key]
        closing = asyncio.ensure_future(sandbox.close())
        self._releasing.add(closing)
        closing.add_done_callback(self._releasing.discard)

    def _context(self, key: str, attempt: int) -> TaskContext:
        tspec = self._task_specs[key]
        secrets = {name: os.environ[name] for name in tspec.secrets if name in os.environ}
        recorder = self.recorder
        agent = tspec.agent
        return TaskContext(
            workflow=self.id,
            task=tspec,
            agent=self.spec.agents[agent],
            attempt=attempt,
            input=dict(tspec.input),
            upstream={d: self.tasks[d].output for d in tspec.depends_on},
            workdir=self._workdir(key),
            sandbox_factory=lambda: self._sandbox(key),
            upstream_workdirs=[self._workdir(d) for d in tspec.depends_on],
            env={**tspec.env, **secrets},
            redact=[v for v in secrets.values() if v],
            emit_output=lambda stream, line: recorder.output(self.id, key, agent, stream, line.split("\n")),
            emit_lines=lambda stream, lines: recorder.output(self.id, key, agent, stream, lines),
            emit_progress=lambda value, message: self._on_progress(key, value, message),
            gate=self.gate,
            loop=asyncio.get_running_loop(),
            emit_event=lambda type, data: self._emit(type, key, **data),
            record_metric=lambda name, value: self.engine.metrics.observe(name, value, agent=agent, workflow=self.id),
            graph=self._graph_support(key) if getattr(self.agents[agent], "uses_graph", False) else None,
            output_backlog=lambda: recorder.output_backlog(self.id, key),
            output_backlogged=lambda: recorder.backlogged(self.id, key),
            remember_memory=lambda *args: self._remember(key, attempt, *args),
            search_memories=self.engine.memory.search,
            watch_seen=lambda: self.engine.watch_seen(self.id),
        )

    def _workdir(self, key: str) -> Path:
        """Task ``key``'s working directory (``Engine.workdir_for``), made once per task."""
        found = self._workdirs.get(key)
        if found is None:
            found = self._workdirs[key] = self.engine.workdir_for(self.id, key)
        return found

    def _graph_support(self, key: str) -> GraphSupport:
        return GraphSupport(
            thread=self.tasks[key].thread or default_thread(self.id, key),
            saver=self.engine.saver,
            approvals=self.engine.approvals,
            nodes=self.engine.stores.graph_nodes,
            waiting=lambda waiting: self._waiting(key, waiting),
        )

    def _on_progress(self, key: str, value: float, message: str) -> None:
        """Every report is an event; the task row's ``progress`` is written at most once a ``PROGRESS_WRITE_S``
        per task (a row write costs a hundred events: a thousand agents reporting ten times a second would
        otherwise keep the database busy with nothing else). The latest value is written by ``_before_write``."""
        self._emit(EventType.TASK_PROGRESS, key, progress=value, message=message)
        self.tasks[key].progress = value
        now = time.monotonic()
        if now - self._progress_written.get(key, 0.0) >= PROGRESS_WRITE_S:
            self._progress_written[key] = now
            self._unwritten_progress.discard(key)
            self.writer.task(self.id, key, {"progress": value})
        else:
            self._unwritten_progress.add(key)

    def _before_write(self) -> None:
        """Before each write of the state writer: progress held back long enough, and a checkpoint for the
        completions since the last one."""
        if self._unwritten_progress:
            now = time.monotonic()
            for key in [k for k in self._unwritten_progress if now - self._progress_written[k] >= PROGRESS_WRITE_S]:
                self._unwritten_progress.discard(key)
                self._progress_written[key] = now
                if not self.tasks[key].status.finished:
                    self.writer.task(self.id, key, {"progress": self.tasks[key].progress})
        self._seal_checkpoint()

    async def _run_task(self, key: str) -> None:
        tspec = self._task_specs[key]
        agent = self.agents[tspec.agent]
        timeout = tspec.effective_timeout(self.spec.defaults)
        attempts = tspec.max_attempts(self.spec.defaults)
        started = time.monotonic()
        queued = self._queued_at.pop(key, started)
        self.engine.metrics.observe("task_queue_wait_s", started - queued, agent=tspec.agent, workflow=self.id)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            if self._transition(key, TaskStatus.RETRYING, error=str(error)):
                self._emit(EventType.TASK_RETRYING, key, attempt=state.attempt_number, error=str(error), delay_s=delay)

        try:
            if attempts == 1:  # tenacity's machinery costs more than a no-op task: skip it when there is no retry
                await self.gate.wait()
                output = await self._attempt(key, agent, timeout)
            else:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(attempts),
                    # state.attempt_number is the attempt that just failed: wait what the spec gives the next one
                    wait=lambda state: self.spec.defaults.backoff_before(state.attempt_number + 1),
                    retry=retry_if_exception_type(_Attempt),
                    before_sleep=before_sleep,
                    reraise=True,
                ):
                    with attempt:
                        await self.gate.wait()
                        output = await self._attempt(key, agent, timeout)
        except _Attempt as exc:
            self._fail(key, str(exc))
        except asyncio.CancelledError:
            if key not in self._resetting and self._transition(key, TaskStatus.CANCELLED, finished_at=_now()):
                self._emit(EventType.TASK_CANCELLED, key, **({"reason": "engine stopped"} if self.stopping else {}))
                if not self.cancelled and not self.stopping:
                    self._block_downstream(key)
        except Exception as exc:  # an agent bug: fail the task with the message, keep the engine alive
            log.exception("task %s of %s crashed", key, self.id)
            self._fail(key, f"{type(exc).__name__}: {exc}", cancel_others=False)
        else:
            self._complete(key, output, time.monotonic() - started)

    def _task_done(self, key: str, handle: asyncio.Task[None]) -> None:
        """A task's attempts are over (or it was cancelled before it started): it no longer runs."""
        if self._running.get(key) is handle:
            del self._running[key]
        self.dag.stopped(key)
        self._timeouts.pop(key, None)
        self._frozen.pop(key, None)
        self._contexts.pop(key, None)
        self._release_sandbox(key)
        self._wake.set()

    async def _attempt(self, key: str, agent: Agent, limit_s: float | None) -> Any:
        number = self.tasks[key].attempts + 1
        self._transition(key, TaskStatus.RUNNING, attempts=number, started_at=_now(), error=None)
        self._emit(EventType.TASK_STARTED, key, attempt=number)
        self.engine.metrics.count("tasks_started", agent=self.tasks[key].agent, workflow=self.id)
        ctx = self._context(key, number)
        self._contexts[key] = ctx
        try:
            async with asyncio.timeout(limit_s) as deadline:
                self._timeouts[key] = deadline
                try:
                    return await agent.run(ctx)
                finally:
                    # Gone before the timeout context ends: a pause must never reschedule a finished timeout.
                    self._timeouts.pop(key, None)
                    self._frozen.pop(key, None)
        except TimeoutError as exc:
            raise _Attempt(f"timed out after {limit_s:g}s") from exc
        except (TaskFailed, SandboxError) as exc:  # a sandbox that failed (E2B unreachable) fails the attempt
            raise _Attempt(str(exc)) from exc

    def _complete(self, key: str, output: Any, duration: float) -> None:
        if not self._transition(key, TaskStatus.COMPLETED, output=output, finished_at=_now(), progress=1.0):
            return  # a rollback sent it back to pending while it finished: its result is not wanted
        agent = self.tasks[key].agent
        self._emit(EventType.TASK_COMPLETED, key, duration_s=round(duration, 4), attempts=self.tasks[key].attempts)
        self.engine.metrics.count("tasks_completed", agent=agent, workflow=self.id)
        self.engine.metrics.observe("task_duration_s", duration, agent=agent, workflow=self.id)
        self._unsealed.append(key)  # checkpointed with the other completions of this write (_seal_checkpoint)
        self._mark_ready(self.dag.completed(key))

    def _fail(self, key: str, error: str, cancel_others: bool = True) -> None:
        if not self._transition(key, TaskStatus.FAILED, error=error, finished_at=_now()):
            return
        self._emit(EventType.TASK_FAILED, key, error=error, attempts=self.tasks[key].attempts)
        self.engine.metrics.count("tasks_failed", agent=self.tasks[key].agent, workflow=self.id)
        self._block_downstream(key)
        if self.spec.failure_policy == "fail_fast":
            self._stop_new = True
            if cancel_others:
                for other, handle in self._running.items():
                    if other != key and not handle.cancelling():
                        handle.cancel()
