"""One workflow being run: the dependency-aware scheduler and the controls acting on it.

Every ready task starts at once, up to the workflow's ``concurrency`` and each agent's ``concurrency``.
Each task runs its attempts under a timeout (time spent paused does not count) with retries and exponential
backoff (tenacity). Every transition is written to the task table first and then emitted as an event.

Controls: ``pause`` (no new task starts, running sandboxes are frozen with SIGSTOP, agents hold at their next
step boundary), ``resume``, ``cancel`` (running work is cancelled and its process trees killed; what has not
run is skipped), ``retry`` of one task, and ``rollback`` to a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from db.models import Task, TaskStatus, Workflow, WorkflowStatus
from engine.agents import Agent, TaskContext, check_agents
from engine.errors import TaskFailed
from engine.graph.support import GraphSupport, default_thread
from engine.run_controls import RunControls
from engine.sandbox import Sandbox, make_sandbox
from engine.spec import WorkflowSpec

if TYPE_CHECKING:
    from engine.engine import Engine

log = logging.getLogger(__name__)

_BLOCKING = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


def _now() -> datetime:
    return datetime.now(UTC)


class _Attempt(Exception):
    """Internal: one attempt failed in a way worth retrying (wraps TaskFailed and timeouts)."""


class WorkflowRun(RunControls):
    def __init__(self, engine: Engine, workflow: Workflow, spec: WorkflowSpec, tasks: dict[str, Task]) -> None:
        self.engine = engine
        self.workflow = workflow
        self.id = workflow.id
        self.spec = spec
        self.tasks = tasks
        self.agents: dict[str, Agent] = check_agents(spec)
        self.gate = asyncio.Event()
        self.gate.set()
        self.cancelled = False
        self._stop_new = False  # fail_fast tripped
        self._task_specs = {task_spec.id: task_spec for task_spec in spec.tasks}
        self._writes: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._sandboxes: dict[str, Sandbox] = {}
        self._timeouts: dict[str, asyncio.Timeout] = {}
        self._contexts: dict[str, TaskContext] = {}
        self._wake = asyncio.Event()
        self._checkpoint_number = 0
        self._queued_at: dict[str, float] = {}
        self._waiting_since: dict[str, float] = {}
        self._frozen: dict[str, float] = {}  # task key -> seconds its timeout had left when its clock stopped
        self.finished = asyncio.Event()
        self.status: WorkflowStatus = workflow.status

    # ---- the scheduler ------------------------------------------------------------------------------------

    async def run(self, resumed: bool = False) -> WorkflowStatus:
        """Run until every task is finished or the workflow is cancelled; returns the final status."""
        latest = await self.engine.stores.checkpoints.latest(self.id)
        self._checkpoint_number = latest.number if latest else 0
        await self._set_workflow(status=WorkflowStatus.RUNNING, started_at=self.workflow.started_at or _now())
        self._emit("workflow.resumed" if resumed else "workflow.started", tasks=len(self.tasks))
        try:
            await self._schedule()
        finally:
            for handle in list(self._running.values()):
                # Once only: a second cancel would interrupt the first one's cleanup (LangGraph cancels its
                # running nodes while it exits; interrupted, it leaves them running unowned).
                if not handle.cancelling():
                    handle.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            for sandbox in self._sandboxes.values():
                with contextlib.suppress(Exception):
                    await sandbox.close()
        if self.cancelled:  # what never ran is skipped, recorded before the workflow's own final event
            for key, task in self.tasks.items():
                if not task.status.finished:
                    await self._finish_skipped(key, "workflow cancelled")
        final = self._final_status()
        await self._set_workflow(status=final, finished_at=_now(), lease_until=None, owner=None)
        failed = [k for k, t in self.tasks.items() if t.status is TaskStatus.FAILED]
        self._emit(f"workflow.{final.value}", failed=failed)
        await self.engine.recorder.flush()
        self.finished.set()
        self.engine.forget(self)
        return final

    def _final_status(self) -> WorkflowStatus:
        if self.cancelled:
            return WorkflowStatus.CANCELLED
        if any(t.status is TaskStatus.FAILED for t in self.tasks.values()):
            return WorkflowStatus.FAILED
        if all(t.status is TaskStatus.COMPLETED for t in self.tasks.values()):
            return WorkflowStatus.COMPLETED
        return WorkflowStatus.FAILED

    async def _schedule(self) -> None:
        order = self.spec.topological_order()
        while not self.cancelled:
            self._wake.clear()
            await self._skip_blocked(order)
            if not self.paused and not self._stop_new:
                await self._start_ready(order)
            waiting = [k for k in order if self.tasks[k].status in (TaskStatus.PENDING, TaskStatus.QUEUED)]
            if not self._running and (not waiting or self._stop_new):
                if self._stop_new:
                    for key in waiting:
                        await self._finish_skipped(key, "an earlier task failed (fail_fast)")
                return
            await self._wake.wait()

    async def _skip_blocked(self, order: list[str]) -> None:
        for key in order:
            task = self.tasks[key]
            if task.status is not TaskStatus.PENDING:
                continue
            blocked = [d for d in task.depends_on if self.tasks[d].status in _BLOCKING]
            if blocked:
                await self._finish_skipped(key, f"upstream {blocked[0]} {self.tasks[blocked[0]].status.value}")

    async def _finish_skipped(self, key: str, reason: str) -> None:
        await self._set_task(key, status=TaskStatus.SKIPPED, error=reason, finished_at=_now())
        self._emit("task.skipped", key, reason=reason)

    async def _start_ready(self, order: list[str]) -> None:
        per_agent: dict[str, int] = {}
        for key in self._running:
            per_agent[self.tasks[key].agent] = per_agent.get(self.tasks[key].agent, 0) + 1
        for key in order:
            task = self.tasks[key]
            if task.status not in (TaskStatus.PENDING, TaskStatus.QUEUED) or key in self._running:
                continue
            if any(self.tasks[d].status is not TaskStatus.COMPLETED for d in task.depends_on):
                continue
            limit = self.spec.agents[task.agent].concurrency
            can_start = len(self._running) < self.spec.concurrency and (
                limit is None or per_agent.get(task.agent, 0) < limit
            )
            if task.status is TaskStatus.PENDING:
                self._queued_at[key] = time.monotonic()
                self._emit("task.queued", key)
                if can_start:  # it starts now: "running" is written next, so skip the transient "queued" row
                    self.tasks[key] = task.model_copy(update={"status": TaskStatus.QUEUED})
                else:
                    await self._set_task(key, status=TaskStatus.QUEUED)
            if not can_start:
                continue
            per_agent[task.agent] = per_agent.get(task.agent, 0) + 1
            self._running[key] = asyncio.create_task(self._run_task(key), name=f"agentdeck-task-{self.id}-{key}")

    # ---- one task -----------------------------------------------------------------------------------------

    def _sandbox(self, key: str) -> Sandbox:
        if key not in self._sandboxes:
            tspec = self._task_specs[key]
            chosen = "sandbox" in self.spec.defaults.model_fields_set
            kind = tspec.sandbox or (self.spec.defaults.sandbox if chosen else self.engine.settings.sandbox)
            workdir = self.engine.workdir_for(self.id, key)
            self._sandboxes[key] = make_sandbox(kind, workdir)
        return self._sandboxes[key]

    def _context(self, key: str, attempt: int) -> TaskContext:
        tspec = self._task_specs[key]
        secrets = {name: os.environ[name] for name in tspec.secrets if name in os.environ}
        return TaskContext(
            workflow=self.id,
            task=tspec,
            agent=self.spec.agents[tspec.agent],
            attempt=attempt,
            input=dict(tspec.input),
            upstream={d: self.tasks[d].output for d in tspec.depends_on},
            workdir=self.engine.workdir_for(self.id, key),
            sandbox_factory=lambda: self._sandbox(key),
            upstream_workdirs=[self.engine.workdir_for(self.id, d) for d in tspec.depends_on],
            env={**tspec.env, **secrets},
            redact=[v for v in secrets.values() if v],
            emit_output=lambda stream, line: self._emit("task.output", key, stream=stream, line=line),
            emit_progress=lambda value, message: self._on_progress(key, value, message),
            gate=self.gate,
            loop=asyncio.get_running_loop(),
            emit_event=lambda type, data: self._emit(type, key, **data),
            record_metric=lambda name, value: self.engine.metrics.observe(
                name, value, agent=tspec.agent, workflow=self.id
            ),
            graph=self._graph_support(key) if getattr(self.agents[tspec.agent], "uses_graph", False) else None,
        )

    def _graph_support(self, key: str) -> GraphSupport:
        return GraphSupport(
            thread=self.tasks[key].thread or default_thread(self.id, key),
            saver=self.engine.saver,
            approvals=self.engine.approvals,
            nodes=self.engine.stores.graph_nodes,
            waiting=lambda waiting: self._waiting(key, waiting),
        )

    def _on_progress(self, key: str, value: float, message: str) -> None:
        self._emit("task.progress", key, progress=value, message=message)
        self.tasks[key] = self.tasks[key].model_copy(update={"progress": value})
        self._background(self._persist_progress(key, value))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """A fire-and-forget write, kept referenced until done (the loop holds tasks only weakly)."""
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _persist_progress(self, key: str, value: float) -> None:
        with contextlib.suppress(Exception):
            await self.engine.stores.tasks.update(self.id, key, progress=value)

    async def _run_task(self, key: str) -> None:
        tspec = self._task_specs[key]
        agent = self.agents[tspec.agent]
        timeout = tspec.effective_timeout(self.spec.defaults)
        backoff = self.spec.defaults.retry_backoff
        started = time.monotonic()
        queued = self._queued_at.pop(key, started)
        self.engine.metrics.observe("task_queue_wait_s", started - queued, agent=tspec.agent, workflow=self.id)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.tasks[key] = self.tasks[key].model_copy(update={"status": TaskStatus.RETRYING})
            self._emit("task.retrying", key, attempt=state.attempt_number, error=str(error), delay_s=delay)
            self._background(self._persist_retrying(key, str(error)))

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(tspec.max_attempts(self.spec.defaults)),
                wait=wait_exponential(multiplier=backoff, min=backoff, max=30),
                retry=retry_if_exception_type(_Attempt),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    await self.gate.wait()
                    output = await self._attempt(key, agent, timeout)
        except _Attempt as exc:
            await self._set_task(key, status=TaskStatus.FAILED, error=str(exc), finished_at=_now())
            self._emit("task.failed", key, error=str(exc), attempts=self.tasks[key].attempts)
            self.engine.metrics.count("tasks_failed", agent=tspec.agent, workflow=self.id)
            if self.spec.failure_policy == "fail_fast":
                self._stop_new = True
                for other, handle in self._running.items():
                    if other != key:
                        handle.cancel()
        except asyncio.CancelledError:
            if self.tasks[key].status is not TaskStatus.PENDING:  # a rollback resets tasks to pending itself
                await self._set_task(key, status=TaskStatus.CANCELLED, finished_at=_now())
                self._emit("task.cancelled", key)
        except Exception as exc:  # an agent bug: fail the task with the message, keep the engine alive
            log.exception("task %s of %s crashed", key, self.id)
            await self._set_task(
                key, status=TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=_now()
            )
            self._emit("task.failed", key, error=f"{type(exc).__name__}: {exc}", attempts=self.tasks[key].attempts)
            if self.spec.failure_policy == "fail_fast":
                self._stop_new = True
        else:
            await self._complete(key, output, time.monotonic() - started)
        finally:
            self._running.pop(key, None)
            self._timeouts.pop(key, None)
            self._frozen.pop(key, None)
            self._contexts.pop(key, None)
            self._wake.set()

    async def _persist_retrying(self, key: str, error: str) -> None:
        with contextlib.suppress(Exception):
            await self.engine.stores.tasks.update(self.id, key, status=TaskStatus.RETRYING, error=error)

    async def _attempt(self, key: str, agent: Agent, limit_s: float | None) -> Any:
        number = self.tasks[key].attempts + 1
        await self._set_task(key, status=TaskStatus.RUNNING, attempts=number, started_at=_now(), error=None)
        self._emit("task.started", key, attempt=number)
        self.engine.metrics.count("tasks_started", agent=self.tasks[key].agent, workflow=self.id)
        ctx = self._context(key, number)
        self._contexts[key] = ctx
        try:
            async with asyncio.timeout(limit_s) as deadline:
                self._timeouts[key] = deadline
                return await agent.run(ctx)
        except TimeoutError as exc:
            raise _Attempt(f"timed out after {limit_s:g}s") from exc
        except TaskFailed as exc:
            raise _Attempt(str(exc)) from exc

    async def _complete(self, key: str, output: Any, duration: float) -> None:
        await self._set_task(key, status=TaskStatus.COMPLETED, output=output, finished_at=_now(), progress=1.0)
        self._emit("task.completed", key, duration_s=round(duration, 4), attempts=self.tasks[key].attempts)
        self.engine.metrics.count("tasks_completed", agent=self.tasks[key].agent, workflow=self.id)
        self.engine.metrics.observe("task_duration_s", duration, agent=self.tasks[key].agent, workflow=self.id)
        await self.checkpoint(reason=f"{key} completed", task=key)
