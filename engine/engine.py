"""The engine: runs workflows in this process, persists and publishes their state, and takes controls.

``Engine`` is the public API the dashboard and the CLI use; they never reach into a run's internals.
It heartbeats a lease on each workflow it runs, so a workflow whose owner died can be resumed elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from db.connection import Database, embedded_path
from db.models import EventType, TaskStatus, Workflow, WorkflowStatus
from db.settings import DbSettings, default_data_dir
from db.stores import Stores
from engine.bus import EventBus, make_bus
from engine.engine_controls import EngineControls
from engine.errors import ControlError
from engine.events import EventRecorder
from engine.graph import threads
from engine.graph.approvals import Approvals
from engine.graph.threads import HistoryEntry, LiveRun
from engine.memory import MemoryService
from engine.metrics import MetricsCollector
from engine.private_paths import hidden_from_sandboxes
from engine.remote_backends import RemoteBackends
from engine.run import WorkflowRun
from engine.settings import EngineSettings
from engine.spec import WorkflowSpec
from engine.watch import WatchControls, WatchManager
from engine.writer import StateWriter

if TYPE_CHECKING:
    from engine.sandbox._e2b_pool import E2BPool
    from engine.workers.dispatcher import Dispatcher

LEASE = timedelta(seconds=15)
_LIVE = (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)
HEARTBEAT_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC)


class Engine(EngineControls, WatchControls):
    def __init__(
        self,
        db: Database,
        *,
        bus: EventBus | None = None,
        redis_url: str | None = None,
        workdir_root: Path | None = None,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.stores = Stores.over(db)
        self.settings = EngineSettings()
        # The bus refills a subscriber's gap from the event table; flushing the recorder first makes the
        # missing events findable there.
        self.bus = bus or make_bus(redis_url or self.settings.redis, self.stores.events, flush=self._flush_events)
        # One write path: task and workflow changes, checkpoints and events are group-committed by the writer
        # and events are published once stored (engine/writer.py, engine/events.py).
        self.writer = StateWriter(self.stores.state)
        self.recorder = EventRecorder(self.writer, self.bus, self.stores.events)
        self.metrics = MetricsCollector(self.stores.metrics)
        self.metrics.add_pid_source(self._running_pids)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._temp_root: Path | None = None
        if workdir_root is None:
            path = embedded_path(db.url)
            if path is not None:
                workdir_root = Path(f"{path}.work")
            elif db.kind == "server":
                workdir_root = default_data_dir() / "work"
            else:
                self._temp_root = workdir_root = Path(tempfile.mkdtemp(prefix="agentdeck-work-"))
        self.workdir_root = workdir_root
        self.approvals = Approvals(self.stores, self.recorder)
        # Agent memory: written by tasks with their provenance, searched by agents, the dashboard and the CLI.
        self.memory = MemoryService(self.stores, self.settings.embedder, DbSettings().embedding_dimension)
        self._saver: Any = None
        self.runs: dict[str, WorkflowRun] = {}
        # Watchpoints of the workflows this engine runs: fed every stored event, pausing a workflow when one holds.
        self.watch = WatchManager(self.recorder, self.stores, self.runs, self.pause)
        self._run_tasks: dict[str, asyncio.Task[WorkflowStatus]] = {}
        #: (id, name) of the workflows ``close`` stopped while they ran: the command line says how to resume them.
        self.stopped: list[tuple[str, str]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._started = False
        self.remote = RemoteBackends(redis_url or self.settings.redis, self.owner)

    async def _flush_events(self) -> None:
        await self.recorder.flush()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.bus.ping()  # BusUnavailable (exit 3 at the CLI) before any work starts
        await self.recorder.start()
        await self.metrics.start()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="agentdeck-lease-heartbeat")

    def abandon(self) -> None:
        """Make ``close`` quick: store only the write under way, not the backlog (a second Ctrl-C). What was
        stored is a consistent earlier state (the writer stores prefixes), so workflows stay resumable."""
        self.recorder.writer.abandon()

    async def close(self) -> None:
        """Stop heartbeating, cancel what still runs (it stays resumable), flush events and metrics."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for run in self.runs.values():
            run.stopping = True  # they end as ``stopped`` (resumable), not as a crash
            self.stopped.append((run.id, run.workflow.name))
        for handle in self._run_tasks.values():
            handle.cancel()
        if self._run_tasks:
            await asyncio.gather(*self._run_tasks.values(), return_exceptions=True)
        await self.remote.close()  # E2B sandboxes killed, workers told to stop this engine's commands
        await self.watch.close()
        await self.recorder.close()
        await self.metrics.close()
        await self.memory.close()
        await self.bus.close()
        if self._temp_root is not None:
            shutil.rmtree(self._temp_root, ignore_errors=True)

    @property
    def saver(self) -> Any:
        """The LangGraph checkpointer over this engine's database (made on first use: it imports LangGraph)."""
        if self._saver is None:
            from db.checkpointer import SurrealSaver

            self._saver = SurrealSaver(self.db)
        return self._saver

    @property
    def sandbox_hidden(self) -> list[Path]:
        """What shell tasks must not see: the database, its control socket and token, every task's directory."""
        return hidden_from_sandboxes(self.db.url, self.workdir_root)

    def workdir_for(self, workflow: str, task: str) -> Path:
        """A task's working directory (created by its sandbox on first use); it persists across retries."""
        return self.workdir_root / workflow / task

    def e2b_pool(self) -> E2BPool:
        return self.remote.e2b_pool()

    def worker_dispatcher(self) -> Dispatcher:
        return self.remote.dispatcher()

    def _running_pids(self) -> list[tuple[str, str, list[int]]]:
        out = []
        for run in self.runs.values():
            for key, pids in run.sandbox_pids():
                out.append((run.id, run.tasks[key].agent, pids))
        return out

    # ---- starting work ----------------------------------------------------------------------------------

    async def submit(self, spec: WorkflowSpec, vars: Mapping[str, str] | None = None) -> str:
        """Store a new workflow with its tasks and start running it; returns its id."""
        spec.validate_graph()
        workflow = Workflow(
            name=spec.name,
            description=spec.description,
            # What the file set, not every default: a tenth of the values to store, and the same spec on resume.
            spec=spec.model_dump(mode="json", exclude_unset=True),
            source=spec.source,
            vars=dict(vars or {}),
            owner=self.owner,
            lease_until=_now() + LEASE,
        )
        tasks = spec.task_rows(workflow.id)
        # Through the writer, in order: every task row, then the workflow row (so a workflow exists only once all
        # its tasks do and can always be resumed), then its first event. The run starts at once, its writes
        # queued behind these: creating a large workflow overlaps running it.
        for task in tasks:
            self.writer.new_task(task)
        self.writer.new_workflow(workflow)
        self.recorder.emit(
            workflow.id, EventType.WORKFLOW_CREATED, data={"name": spec.name, "tasks": [t.id for t in spec.tasks]}
        )
        created = self.writer.mark()
        self._launch(WorkflowRun(self, workflow, spec, {t.key: t.model_copy() for t in tasks}), resumed=False)
        await self.writer.commit(upto=created)  # stored when submit returns; the run goes on meanwhile
        return workflow.id

    async def resume_workflow(self, workflow_id: str) -> str:
        """Run a stored workflow again from where it stopped (crash, cancel, failure); completed tasks stay done."""
        run = await self._live_run(workflow_id)
        if run is not None:
            if run.paused:
                await run.resume()
            return workflow_id
        self._launch(await self._adopt(workflow_id), resumed=True)
        return workflow_id

    async def _adopt(self, workflow_id: str, *, completed_ok: bool = False, lease_ok: bool = False) -> WorkflowRun:
        """A run of a stored workflow nobody runs, rebuilt from its rows and claimed by this engine but not yet
        started: a control then acts on it exactly as on a live run (one implementation per control), and the
        caller launches it. Its unfinished tasks go back to pending; completed ones stay done.

        ``completed_ok``: a completed workflow may be adopted (retry and rollback run parts of it again).
        ``lease_ok``: adopt even while another engine's lease on a server database has not run out (cancel)."""
        workflow = await self._workflow(workflow_id)
        if workflow.status is WorkflowStatus.COMPLETED and not completed_ok:
            raise ControlError(f"workflow {workflow_id} already completed; use retry or rollback to run parts again")
        if (
            not lease_ok
            and not self.db.is_embedded  # an embedded DB is locked by its owner: if we opened it, the owner is gone
            and workflow.status in _LIVE
            and workflow.lease_until is not None
            and workflow.lease_until > _now()
            and workflow.owner != self.owner
        ):
            raise ControlError(
                f"workflow {workflow_id} is being run by {workflow.owner} (lease until "
                f"{workflow.lease_until:%H:%M:%S} UTC); if that process is gone, retry after the lease expires"
            )
        spec = WorkflowSpec.model_validate(workflow.spec)
        tasks = {t.key: t for t in await self.stores.tasks.list(workflow_id)}
        missing = [t.id for t in spec.tasks if t.id not in tasks]
        if missing:
            raise ControlError(f"workflow {workflow_id} is missing task rows {missing[:5]}; it cannot be resumed")
        for key, task in tasks.items():
            if task.status is not TaskStatus.COMPLETED:
                reset: dict[str, Any] = {"status": TaskStatus.PENDING, "error": None, "progress": None}
                for name, value in reset.items():
                    setattr(task, name, value)
                self.writer.task(workflow_id, key, reset)
        previous_owner = workflow.owner
        claim: dict[str, Any] = {"owner": self.owner, "lease_until": _now() + LEASE, "finished_at": None, "error": None}
        for name, value in claim.items():
            setattr(workflow, name, value)
        self.writer.workflow(workflow_id, claim)
        fallback = self.settings.sandbox
        if previous_owner and any(t.effective_sandbox(spec.defaults, fallback) == "worker" for t in spec.tasks):
            self.remote.fence_workers(workflow_id, previous_owner)  # its old commands stop before ours start
        await self.recorder.resume_sequence(workflow_id)  # also stores the resets above
        await self.watch.arm_stored(workflow_id)  # the watchpoints it had (a file's, and those added live)
        return WorkflowRun(self, workflow, spec, tasks, adopted=True)

    def _launch(self, run: WorkflowRun, resumed: bool) -> None:
        if resumed:
            self.remote.sweep_e2b(self.workdir_root / run.id)
        self.runs[run.id] = run
        if not resumed:  # a new workflow: its file's watchpoints are armed before its first event is stored
            self.watch.declare(run.id, run.spec)
        handle = asyncio.create_task(run.run(resumed=resumed), name=f"agentdeck-workflow-{run.id}")
        self._run_tasks[run.id] = handle
        handle.add_done_callback(lambda _: self.forget(run))

    def forget(self, run: LiveRun) -> None:
        """A run finished: it is no longer live here. Called by the run itself as it returns (so a resume
        right after ``wait`` sees it gone) and again when its asyncio task is done; only ever removes this run,
        not a newer run of the same workflow launched meanwhile."""
        if self.runs.get(run.id) is run:
            del self.runs[run.id]
            self._run_tasks.pop(run.id, None)

    async def watch_seen(self, workflow: str) -> None:
        await self.watch.seen(workflow)

    async def wait(self, workflow_id: str) -> WorkflowStatus:
        """Wait for a workflow run in this engine to finish; returns its final status."""
        handle = self._run_tasks.get(workflow_id)
        if handle is not None:
            return await asyncio.shield(handle)
        return (await self._workflow(workflow_id)).status

    def is_running(self, workflow_id: str) -> bool:
        return workflow_id in self.runs

    def is_paused(self, workflow_id: str) -> bool | None:
        """Whether this engine's run of the workflow is paused now; None when this engine does not run it."""
        run = self.runs.get(workflow_id)
        return None if run is None else run.paused

    # ---- graph controls (the others: engine.engine_controls) -----------------------------------------

    async def graph_history(self, workflow_id: str, task: str) -> list[HistoryEntry]:
        """The checkpoint history of a graph task's thread, newest first."""
        return await threads.history(self, workflow_id, task)

    async def fork_graph(
        self,
        workflow_id: str,
        task: str,
        checkpoint_id: str,
        values: dict[str, Any] | None = None,
        *,
        downstream: bool = True,
    ) -> str:
        """Time travel: fork the task's thread at ``checkpoint_id`` (optionally with edited state) and run the
        task again from there, so only the steps after it run; returns the new head checkpoint's id.

        ``downstream``: the tasks after it that completed run again too (they used its old output); False keeps
        their outputs, and only what it had blocked runs."""
        run = await self._live_run(workflow_id)
        if run is not None and run.is_task_running(task):
            raise ControlError(f"task {task} is running; pause does not stop it mid-step: cancel it or wait for it")
        head, step = await threads.fork(self, workflow_id, task, checkpoint_id, values)
        hidden = await self.memory.follow_fork(workflow_id, task, step, by=head)  # the fork sees memory as of then
        if run is None:
            await self.recorder.resume_sequence(workflow_id)
        self.recorder.emit(
            workflow_id,
            EventType.GRAPH_FORKED,
            task=task,
            data={
                "from": checkpoint_id,
                "head": head,
                "edited": sorted(values or {}),
                "memories_hidden": hidden,
                "downstream": downstream,
            },
        )
        await self.retry(workflow_id, task, fresh=False, downstream=downstream)
        return head

    # ---- leases -----------------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            # Through the writer: no read-back of the workflow row (its spec can be megabytes), no extra round trip.
            for workflow_id in list(self.runs):
                self.writer.workflow(workflow_id, {"owner": self.owner, "lease_until": _now() + LEASE})
