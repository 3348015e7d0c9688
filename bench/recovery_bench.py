"""Recovery: ``agentdeck run --headless --json`` killed with SIGKILL at random moments, then ``agentdeck resume``.

Each trial runs a workflow of small tasks on a fresh ``surrealkv://`` store — python steps that append ``TASK PID``
to a log file halfway through, shell commands that append a line to a file in their working directory and declare
an output, one shell task that fails its first attempt — kills the runner at a random moment (a seeded delay after
its first event, or right after its k-th event reached stdout), reads what the store kept, resumes the workflow
through the command line and checks, as Temporal and DBOS check themselves:

- every event printed live before the kill is stored with the same id, seq, type, task and data, before and after
  the resume (a seq once published names one event forever: ``seq_reused``, ``unstored``);
- the stored stream is gap-free and no seq appears twice (``gaps``);
- a task the killed run printed as completed was stored completed (``lost``), never runs again (``rerun``), and is
  completed at the end; every task completes exactly once overall (``not_once``).

``agentdeck bench`` reports the counts over N trials (10 with ``--quick``, 50 in full); every count but the
completed tasks must be 0. The fault suite (tests/integration/test_fault_kill.py) runs the same trials and asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from db import connect
from db.errors import DatabaseUnavailable
from db.models import Event, Task, TaskStatus, Workflow, WorkflowStatus
from db.stores import Stores

AGENTDECK = str(Path(sys.executable).parent / "agentdeck")
DAG_TASKS = 40
#: Roughly how many events a 40-task run prints and how long it runs on 2 busy cores: where the kills land.
EVENTS_SPAN = 200
DELAY_SPAN_S = 2.0
#: The shell tasks: one appends to ``ran.log`` only once its first attempt failed (the mark survives retries and
#: resume, as the working directory does); the others print, append and declare an output.
FLAKY = "if [ ! -f .tried ]; then touch .tried; exit 1; fi; echo ran >> ran.log"
SHELL = 'echo {key} go; sleep 0.05; echo ran >> ran.log; echo \'::output::{{"k": "{key}"}}\''
PATIENCE_S = 180.0


def workflow_spec(log: Path, n: int = DAG_TASKS) -> dict[str, Any]:
    """``n`` tasks in layers of 6, each depending on one or two of the layer before; a quarter are shell tasks."""
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        key = f"k{i:02d}"
        layer = i // 6
        before = [f"k{j:02d}" for j in range((layer - 1) * 6, layer * 6)] if layer else []
        deps = sorted({before[(i * 7) % 6], before[(i * 3 + 1) % 6]}) if before else []
        task: dict[str, Any] = {"id": key, "depends_on": deps}
        if i == 10:  # fails its first attempt; its working directory (and the mark) survives retries and resume
            task |= {
                "agent": "sh",
                "retries": 1,
                "run": "if [ ! -f .tried ]; then touch .tried; exit 1; fi; echo ran >> ran.log",
            }
        elif i % 4 == 3:
            task |= {
                "agent": "sh",
                "run": f'echo {key} go; sleep 0.05; echo ran >> ran.log; echo \'::output::{{"k": "{key}"}}\'',
            }
        else:
            task |= {"agent": "py", "input": {"log": str(log), "delay": 0.1}}
        tasks.append(task)
    return {
        "name": "recovery-bench",
        "concurrency": 6,
        "defaults": {"retry_backoff": "100ms"},
        "agents": {"py": {"kind": "python", "callable": "bench._recovery_steps:record"}, "sh": {"kind": "shell"}},
        "tasks": tasks,
    }


def write_workflow(folder: Path, n: int = DAG_TASKS) -> tuple[Path, Path]:
    """The workflow file and the side-effect log its python steps write."""
    log = folder / "side-effects.log"
    path = folder / "recovery.yaml"
    path.write_text(yaml.safe_dump(workflow_spec(log, n), sort_keys=False, width=200))
    return path, log


@dataclass(frozen=True)
class Trigger:
    """When to kill: ``delay`` seconds after the first event was printed, or right after the ``events``-th."""

    delay: float | None = None
    events: int | None = None

    def __str__(self) -> str:
        return f"{self.delay:.2f}s after the first event" if self.delay is not None else f"after event {self.events}"


def random_triggers(count: int, seed: int) -> list[Trigger]:
    rng = random.Random(seed)
    return [
        Trigger(delay=rng.uniform(0, DELAY_SPAN_S)) if i % 2 else Trigger(events=rng.randint(1, EVENTS_SPAN))
        for i in range(count)
    ]


@dataclass
class Trial:
    """What one trial saw; ``problems`` says what broke, in words."""

    trigger: str
    workflow: str | None = None
    killed: str = ""  # "before the workflow was stored", "while it ran", "after it finished"
    printed: int = 0  # events printed before the kill
    completed_at_kill: int = 0  # tasks stored completed when the runner died
    rerun: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    seq_reused: list[int] = field(default_factory=list)
    unstored: list[int] = field(default_factory=list)
    gaps: int = 0
    not_once: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    return env | {"XDG_DATA_HOME": str(folder / "xdg")}


class _Runner:
    """``agentdeck run FILE --headless --json`` with stdout parsed on a thread as it arrives."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self._stderr = stderr.open("w")
        self.proc = subprocess.Popen(
            [AGENTDECK, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by the kill was never whole
                    self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def kill_when(self, trigger: Trigger) -> None:
        """SIGKILL once ``trigger`` holds (at once if the run ends first), then reap it and read the rest."""
        deadline = time.monotonic() + PATIENCE_S
        with self._changed:
            wanted = trigger.events or 1
            while len(self.events) < wanted and self.proc.poll() is None and time.monotonic() < deadline:
                self._changed.wait(0.05)
        if trigger.delay is not None:  # the fault injection: a random moment no condition can pick
            time.sleep(trigger.delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=PATIENCE_S)
        self._reader.join(timeout=PATIENCE_S)
        self._stderr.close()


@dataclass
class _Stored:
    workflow: Workflow
    tasks: dict[str, Task]
    events: list[Event]


def _read_store(url: str, workflow: str | None) -> _Stored | None:
    """What the store holds for ``workflow`` (or the only workflow in it), None if none. Right after a SIGKILL the
    embedded store's lock may take a moment to go."""

    async def read() -> _Stored | None:
        async with connect(url) as db:
            stores = Stores.over(db)
            found = (
                await stores.workflows.get(workflow) if workflow else next(iter(await stores.workflows.list()), None)
            )
            if found is None:
                return None
            tasks = {t.key: t for t in await stores.tasks.list(found.id)}
            return _Stored(found, tasks, await stores.events.list(found.id))

    deadline = time.monotonic() + 30
    while True:
        try:
            return asyncio.run(read())
        except DatabaseUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _wire(event: Event) -> dict[str, Any]:
    """The fields a published event must keep forever, as ``--json`` printed them."""
    out = json.loads(json.dumps(event.to_json_dict(), default=str))
    return {key: out.get(key) for key in ("id", "seq", "type", "task", "data")}


def _side_effects(folder: Path, workflow: str, spec: dict[str, Any], log: Path) -> dict[str, list[str]]:
    """Who did each task's work so far: a pid per python step run, "sh" per line a shell task appended."""
    done: dict[str, list[str]] = {t["id"]: [] for t in spec["tasks"]}
    for line in log.read_text().splitlines() if log.exists() else []:
        task, pid = line.split()
        done[task].append(pid)
    for task in spec["tasks"]:
        ran = folder / "state.db.work" / workflow / task["id"] / "ran.log"
        if task["agent"] == "sh" and ran.exists():
            done[task["id"]] += ["sh"] * len(ran.read_text().splitlines())
    return done


def compare_live(trial: Trial, live: list[dict[str, Any]], stored: list[Event], when: str) -> None:
    """Record in ``trial`` every event printed live (``--json`` objects) that is not stored as printed, and a
    stored stream that is not gap-free and unique."""
    by_seq: dict[int, list[Event]] = {}
    for event in stored:
        by_seq.setdefault(event.seq, []).append(event)
    seqs = [e.seq for e in stored]
    if seqs != list(range(1, len(seqs) + 1)):
        trial.gaps += 1
        trial.problems.append(f"{when}: the stored stream is not gap-free and unique ({len(seqs)} events)")
    for printed in live:
        want = {key: printed.get(key) for key in ("id", "seq", "type", "task", "data")}
        seq = int(printed["seq"])
        found = by_seq.get(seq, [])
        if not found:
            trial.unstored += [seq] if seq not in trial.unstored else []
            trial.problems.append(f"{when}: #{seq} {want['type']} was printed but is not stored")
        elif [_wire(e) for e in found] != [want]:
            trial.seq_reused += [seq] if seq not in trial.seq_reused else []
            trial.problems.append(f"{when}: #{seq} printed as {want} is stored as {[_wire(e) for e in found]}")


def run_trial(folder: Path, trigger: Trigger, n: int = DAG_TASKS) -> Trial:
    """One kill and resume in ``folder`` (empty); returns what it saw."""
    trial = Trial(str(trigger))
    url = f"surrealkv://{folder / 'state.db'}"
    path, log = write_workflow(folder, n)
    spec = workflow_spec(log, n)
    runner = _Runner(["run", str(path), "--headless", "--json", "--db", url], _env(folder), folder / "run.stderr")
    runner.kill_when(trigger)
    live = runner.events
    trial.printed = len(live)
    trial.workflow = str(live[0]["workflow"]) if live else None
    crashed = _read_store(url, trial.workflow)
    if crashed is None:
        trial.killed = "before the workflow was stored"
        if live:
            trial.problems.append("events were printed for a workflow that is not stored")
        return trial
    trial.workflow = workflow = crashed.workflow.id
    finished = crashed.workflow.status.finished
    trial.killed = "after it finished" if finished else "while it ran"
    compare_live(trial, live, crashed.events, "after the kill")
    done = {k for k, t in crashed.tasks.items() if t.status is TaskStatus.COMPLETED}
    trial.completed_at_kill = len(done)
    printed_done = {str(e["task"]) for e in live if e["type"] == "task.completed"}
    trial.lost += sorted(printed_done - done)
    before = _side_effects(folder, workflow, spec, log)
    for key in sorted(done):
        if len(before[key]) != 1:
            trial.not_once.append(key)
            trial.problems.append(f"{key} is completed with its work done {len(before[key])} times")
    if not finished:
        resumed = subprocess.run(
            [AGENTDECK, "resume", workflow, "--headless", "--json", "--db", url],
            capture_output=True, text=True, timeout=PATIENCE_S, env=_env(folder), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if resumed.returncode != 0:
            trial.problems.append(f"resume exited {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
    final = _read_store(url, workflow)
    assert final is not None
    compare_live(trial, live, final.events, "after the resume")
    after = _side_effects(folder, workflow, spec, log)
    trial.rerun += sorted(key for key in done if after[key] != before[key])
    not_completed = sorted(k for k, t in final.tasks.items() if t.status is not TaskStatus.COMPLETED)
    trial.lost += [k for k in not_completed if k not in trial.lost]
    completions = Counter(e.task for e in final.events if e.type == "task.completed")
    for key in spec["tasks"]:
        work = len(after[key["id"]]) - len(before[key["id"]]) if key["id"] not in done else 0
        if completions[key["id"]] != 1 or (key["id"] not in done and work != 1):
            trial.not_once.append(key["id"])
            trial.problems.append(f"{key['id']}: completed {completions[key['id']]} times, run {work} times on resume")
    if final.workflow.status is not WorkflowStatus.COMPLETED:
        trial.problems.append(f"the workflow ended {final.workflow.status.value}")
    if trial.rerun:
        trial.problems.append(f"completed before the kill, ran again: {trial.rerun}")
    if trial.lost:
        trial.problems.append(f"lost (printed completed but not stored so, or not completed at the end): {trial.lost}")
    return trial


def run_trials(count: int, seed: int, n: int = DAG_TASKS, triggers: list[Trigger] | None = None) -> list[Trial]:
    """``count`` trials (seeded random kill moments unless ``triggers`` are given), each in its own folder."""
    chosen = triggers if triggers is not None else random_triggers(count, seed)
    trials = []
    for trigger in chosen:
        with tempfile.TemporaryDirectory(prefix="agentdeck-recovery-") as folder:
            trials.append(run_trial(Path(folder), trigger, n))
    return trials


def figures(trials: list[Trial]) -> dict[str, Any]:
    """The counts ``agentdeck bench`` reports; all but the completed ones must be 0."""
    out: dict[str, Any] = {
        "trials": len(trials),
        "killed_while_running": sum(1 for t in trials if t.killed == "while it ran"),
        "completed_before_kill": sum(t.completed_at_kill for t in trials),
        "events_printed_before_kill": sum(t.printed for t in trials),
        "rerun": sum(len(t.rerun) for t in trials),
        "lost": sum(len(t.lost) for t in trials),
        "seq_reused": sum(len(t.seq_reused) for t in trials),
        "printed_not_stored": sum(len(t.unstored) for t in trials),
        "streams_with_gaps": sum(t.gaps for t in trials),
        "not_exactly_once": sum(len(t.not_once) for t in trials),
        "failed_trials": [f"{t.trigger}: {t.problems[0]}" for t in trials if t.problems][:5],
    }
    out["met"] = not any(t.problems for t in trials)
    return out


async def run(quick: bool, seed: int = 9) -> dict[str, Any]:
    trials = await asyncio.to_thread(run_trials, 10 if quick else 50, seed)
    return {"recovery_kill9": {"tasks_per_workflow": DAG_TASKS, "seed": seed, **figures(trials)}}
