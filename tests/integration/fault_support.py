"""What the fault suite's in-process tests share: workflows of many small tasks, a record of what was published
live, a storm of controls, and the checks that must hold after any run whatever raced what.

The checks read the store (task rows, the event stream) and compare it with what the engine published and with
how often each task's work was really done (``fault_steps.CALLS``, or the lines a shell task appended in its
working directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from db.models import Event, Task, TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.errors import ControlError
from engine.spec import WorkflowSpec
from tests.integration.workflows.fault_steps import CALLS

STEPS = "tests.integration.workflows.fault_steps"

#: The status a task's event leaves it in.
EVENT_STATUS = {
    "task.queued": TaskStatus.QUEUED,
    "task.started": TaskStatus.RUNNING,
    "task.resumed": TaskStatus.RUNNING,
    "task.paused": TaskStatus.PAUSED,
    "task.waiting": TaskStatus.WAITING,
    "task.retrying": TaskStatus.RETRYING,
    "task.completed": TaskStatus.COMPLETED,
    "task.failed": TaskStatus.FAILED,
    "task.cancelled": TaskStatus.CANCELLED,
    "task.skipped": TaskStatus.SKIPPED,
}
FINAL_EVENTS = frozenset({"workflow.completed", "workflow.failed", "workflow.cancelled"})
#: What may be recorded for a workflow between one run's end and the next run's start (controls on a stopped one).
BETWEEN_RUNS = frozenset({"workflow.rolled_back", "checkpoint.created", "graph.forked"})


def make_spec(tasks: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    agents = {
        "quick": {"kind": "python", "callable": f"{STEPS}:quick"},
        "sync": {"kind": "python", "callable": f"{STEPS}:quick_sync"},
        "flaky": {"kind": "python", "callable": f"{STEPS}:flaky"},
        "held": {"kind": "python", "callable": f"{STEPS}:held"},
        "sh": {"kind": "shell"},
    }
    return WorkflowSpec.model_validate({"name": "fault-races", "agents": agents, "tasks": tasks, **extra})


def many_tasks(n: int, rng: random.Random, width: int = 20, shell: bool = True) -> list[dict[str, Any]]:
    """``n`` small tasks in layers of ``width``, each depending on up to two of the layer before: mostly async
    python steps of 0-5 ms (a quarter of them print a line), a fifth in a worker thread, one in twenty a shell
    command that prints a line and appends one to ``ran.log`` in its working directory (without ``shell``, an
    async step instead)."""
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        layer = i // width
        before = [f"t{j:03d}" for j in range((layer - 1) * width, layer * width)] if layer else []
        task: dict[str, Any] = {"id": f"t{i:03d}", "depends_on": rng.sample(before, min(len(before), 2))}
        kind = rng.random()
        if kind < 0.05 and shell:
            task.update(agent="sh", run=f"echo {task['id']} ran >> ran.log; echo line from {task['id']}")
        elif kind < 0.25:
            task.update(agent="sync", input={"delay": rng.uniform(0, 0.005)})
        else:
            task.update(agent="quick", input={"delay": rng.uniform(0, 0.005), "say": "hi" if kind < 0.5 else ""})
        tasks.append(task)
    return tasks


def tail(gate_name: str) -> dict[str, Any]:
    """A task that keeps its workflow running until the test opens ``gate_name``: controls then land while
    the workflow runs for sure, however fast the other tasks are."""
    return {"id": "tail", "agent": "held", "input": {"gate": gate_name}}


class Live:
    """Every event the engine published, in order (through a listener, as ``--json`` output gets them)."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[Event] = []
        engine.recorder.add_listener(self.events.append)

    def of(self, workflow: str, type: str | None = None) -> list[Event]:
        return [e for e in self.events if e.workflow == workflow and (type is None or e.type == type)]

    async def wait_for(self, workflow: str, type: str, count: int = 1, limit_s: float = 60) -> Event:
        """The ``count``-th published event of ``type`` (waits for it)."""
        async with asyncio.timeout(limit_s):
            while len(found := self.of(workflow, type)) < count:  # noqa: ASYNC110 - a listener has no wake-up
                await asyncio.sleep(0.002)
        return found[count - 1]


async def settled(engine: Engine, workflow: str) -> tuple[dict[str, Task], list[Event]]:
    """The stored task rows and event stream, once everything emitted so far is stored."""
    await engine.recorder.flush()
    tasks = {t.key: t for t in await engine.stores.tasks.list(workflow)}
    return tasks, await engine.stores.events.list(workflow)


def runs_of(engine: Engine, workflow: str, spec: WorkflowSpec) -> Counter[str]:
    """How often each task's work was done: step calls, or lines a shell task appended in its workdir."""
    runs: Counter[str] = Counter()
    for task in spec.tasks:
        if spec.agents[task.agent].kind == "shell":
            log = engine.workdir_for(workflow, task.id) / "ran.log"
            runs[task.id] = len(log.read_text().splitlines()) if log.exists() else 0
        else:
            runs[task.id] = CALLS[(workflow, task.id)]
    return runs


def check_run_boundaries(events: list[Event]) -> None:
    """Each run of the workflow starts (``workflow.started``, or ``workflow.resumed`` carrying ``tasks``), ends with
    exactly one final event, and nothing but a control on the stopped workflow is recorded between runs."""
    state = "created"
    for event in events:
        starts = event.type == "workflow.started" or (event.type == "workflow.resumed" and "tasks" in event.data)
        if starts:
            assert state != "running", f"#{event.seq} {event.type}: a run started inside a run"
            state = "running"
        elif event.type in FINAL_EVENTS:
            assert state == "running", f"#{event.seq} {event.type}: a second end, or an end with no run"
            state = "ended"
        elif state == "ended":
            assert event.type in BETWEEN_RUNS, f"#{event.seq} {event.type} {event.task or ''} after the run ended"
    assert state == "ended", f"the stream does not end with the workflow's end: {state}"


async def check_consistent(
    engine: Engine, workflow: str, live: Live, final: WorkflowStatus, *, events_tell_state: bool = True
) -> tuple[dict[str, Task], list[Event]]:
    """What must hold after any run, whatever raced what. Returns the stored tasks and events.

    ``events_tell_state``: each task's stored status is the one its last ``task.*`` event says (not after a
    rollback or a resume, which reset tasks without an event per task)."""
    tasks, events = await settled(engine, workflow)
    stored = await engine.stores.workflows.get(workflow)
    assert stored is not None and stored.status is final, (stored and stored.status, final)

    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "the stored stream has a gap or a seq twice"
    published = [(e.seq, e.id, e.type, e.task) for e in live.of(workflow)]
    assert published == [(e.seq, e.id, e.type, e.task) for e in events], "published and stored streams differ"
    check_run_boundaries(events)
    assert events[-1].type == f"workflow.{final.value}"

    # A task published completed stays completed, and completes again only after a retry or rollback reset it.
    completed: set[str] = set()
    for e in events:
        if e.type == "task.completed" and e.task is not None:
            assert e.task not in completed, f"#{e.seq}: {e.task} completed twice without a reset in between"
            completed.add(e.task)
        elif e.type == "task.queued":  # a completed task is queued again only once a retry reset it
            completed.discard(str(e.task))
        elif e.type == "workflow.rolled_back":
            completed -= set(e.data["rerun"])
    for key in completed:
        assert tasks[key].status is TaskStatus.COMPLETED, f"{key} published completed, ends {tasks[key].status}"
    if events_tell_state:
        last: dict[str, TaskStatus] = {}
        for e in events:
            if e.task is not None and e.type in EVENT_STATUS:
                last[e.task] = EVENT_STATUS[e.type]
        disagree = {k: (t.status, last.get(k)) for k, t in tasks.items() if last.get(k, TaskStatus.PENDING) != t.status}
        assert not disagree, f"stored status vs last event: {disagree}"

    failed = sorted(k for k, t in tasks.items() if t.status is TaskStatus.FAILED)
    if final is WorkflowStatus.COMPLETED:
        assert all(t.status is TaskStatus.COMPLETED for t in tasks.values()), "completed, yet a task is not"
    elif final is WorkflowStatus.FAILED:
        assert failed, "the workflow failed, yet no task did"
        assert sorted(events[-1].data["failed"]) == failed
    return tasks, events


async def hammer(
    engine: Engine, workflow: str, rng: random.Random, *, limit: int | None = None, cancel: bool = False
) -> int:
    """Pause and resume ``workflow`` at random tiny intervals, ``limit`` times or until it ends; with ``cancel``,
    the last pause is followed by a cancel instead of a resume. Returns how many pauses landed.

    The random waits are the fault injection: a control must land at an arbitrary moment, which no condition
    can pick."""
    pauses = 0
    with contextlib.suppress(ControlError):  # it ended between our check and the control
        while engine.is_running(workflow) and (limit is None or pauses < limit):
            await engine.pause(workflow)
            pauses += 1
            await asyncio.sleep(rng.uniform(0, 0.004))
            if cancel and pauses == limit:
                await engine.cancel(workflow)
                break
            await engine.resume(workflow)
            await asyncio.sleep(rng.uniform(0, 0.004))
    return pauses


def when(
    engine: Engine, types: set[str] | frozenset[str], control: Callable[[], Awaitable[Any]], count: int = 1
) -> list[asyncio.Future[Any]]:
    """Start ``control()`` the moment the ``count``-th event of one of ``types`` is published (for an engine that
    runs one workflow: install this before submitting it); returns where the control's task will be."""
    started: list[asyncio.Future[Any]] = []
    seen = 0

    def listener(event: Event) -> None:
        nonlocal seen
        if event.type in types:
            seen += 1
            if seen == count:
                started.append(asyncio.ensure_future(control()))

    engine.recorder.add_listener(listener)
    return started


async def outcome(control: list[asyncio.Future[Any]]) -> str:
    """What a control started by ``when`` did: "ok", or the ControlError it was refused with."""
    assert control, "the control was never started"
    try:
        await control[0]
    except ControlError as exc:
        return str(exc)
    return "ok"
