"""Recordings of real runs for the replay tests: run a workflow on a live engine, note each task's state after
every event as the engine had it, and gather the run's rows into a ``Recording``.

The states come from the engine's own task table at the moment each event was recorded (``EventRecorder._record``
is wrapped): a transition is applied just before its event is emitted, so that is the state the event announces.
A ``task.output`` chunk is sealed when the task's next event is emitted, after that event's transition, so an
output event is given the state of the event before it (output changes no task's state).
"""

from __future__ import annotations

from typing import Any

import pytest

from db.models import EventType
from engine.engine import Engine
from engine.recorder.collect import collect
from engine.recorder.model import Recording
from engine.spec import WorkflowSpec

#: seq → {task key: status} as the live engine had it after that event.
LiveStates = dict[int, dict[str, str]]


def watch_live_states(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> LiveStates:
    """Start noting the task states of every workflow ``engine`` runs, per event seq (of the first workflow)."""
    states: LiveStates = {}
    recorder = engine.recorder
    original = recorder._record

    def record(workflow: str, type: str, task: str | None, agent: str | None, data: dict[str, Any], size: int) -> Any:
        event = original(workflow, type, task, agent, data, size)
        run = engine.runs.get(workflow)
        if type == EventType.TASK_OUTPUT or run is None:
            states[event.seq] = dict(states.get(event.seq - 1, {}))
        else:
            states[event.seq] = {key: task.status.value for key, task in run.tasks.items()}
        return event

    monkeypatch.setattr(recorder, "_record", record)
    return states


async def recording_of(engine: Engine, workflow_id: str) -> Recording:
    """The recording of one stored workflow, as ``agentdeck export`` gathers it."""
    await engine.recorder.flush()
    await engine.metrics.flush()  # the last interval's rows too (they are stored once a second)
    return await collect(engine.db, workflow_id)


def shell_spec(name: str = "replayed") -> WorkflowSpec:
    """Shell tasks with a failure that a retry fixes and a later one that fails for good (so a task is skipped)."""
    flaky = "if [ ! -f .tried ]; then touch .tried; echo not yet >&2; exit 1; fi; echo fixed"
    return WorkflowSpec.model_validate(
        {
            "name": name,
            "failure_policy": "continue",
            "defaults": {"retry_backoff": 0.05},
            "agents": {"sh": {"kind": "shell"}},
            "tasks": [
                {"id": "fetch", "agent": "sh", "run": "echo fetching; echo got 3 files"},
                {"id": "flaky", "agent": "sh", "run": flaky, "retries": 2, "depends_on": ["fetch"]},
                {"id": "build", "agent": "sh", "run": "echo building; echo built", "depends_on": ["fetch"]},
                {"id": "broken", "agent": "sh", "run": "echo trying; exit 3", "depends_on": ["build"]},
                {"id": "publish", "agent": "sh", "run": "echo publishing", "depends_on": ["broken"]},
                {"id": "report", "agent": "sh", "run": "echo report", "depends_on": ["flaky", "build"]},
            ],
        }
    )
