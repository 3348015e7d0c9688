"""Dashboard frame gaps at 2,000 events/s: the real app over a real engine on ``mem://``, run headless.

The app is the one the CLI runs (``tui.app.make_app`` over an ``Engine``), at 160x48 under Textual's headless
driver (``run_test``). The engine runs a workflow of 8 python tasks that just wait; the feed then emits events for
them through the engine's own ``EventRecorder`` (persisted to ``mem://`` and published on the in-process bus, the
path real output takes) at 2,000 events/s for the window: output from all 8 tasks (stdout, one in ten stderr),
progress, state changes (paused → resumed → retrying → started again, which retitle the panes) and now and then an
``llm.usage`` (the pane's tokens and cost). Output comes in two shapes: ``line`` — one line per event, the shape
before output was chunked, which the dashboard before this bench could read — and ``chunk`` — 1 to 6 lines per event
(``data["lines"]``, 3.5 on average), the shape the engine now emits.

What is measured, and why:

- **Frame gap** — the interval between consecutive screen updates the compositor hands to the driver
  (``App._display``). Output flows all the time, so the screen should change every frame (20 a second); a gap is
  how long the picture stood still, which is what the user sees as a stall (target: none over 100 ms). Headless
  Textual skips turning an update into terminal escape sequences, so the bench does that step itself — its cost
  counts as it would on a terminal.
- **CPU between frames** (``gap_cpu_*``) — the loop thread's own CPU time between two screen updates: the work that
  held the next frame back (the UI, the engine, the feed, the collector; the database's native threads are not
  counted). On a machine shared with other work a gap also holds time the process simply did not get a core; this
  part does not, so it is what a gap would be with a core to spare (never less than the 50 ms frame interval).
- **Loop lateness** — how late a 1/60 s ``asyncio.sleep`` wakes on the app's loop: how long a key press waits.
- **Consumed** — events handed to the widgets (the feed's consumers) per second of the window, and how long after
  the feed stops the last one reaches them (the backlog the UI built up).
- **CPU** — process CPU seconds per wall second over the window (1.0 = one core), and the share of a core the
  process could get just before the window (``cpu_share_available``, from spinning 0.3 s: 1.0 on an idle machine).
  On a shared machine every figure above moves with it, so it is reported beside them.
- **Peer** — the same engine, workflow and feed with no app (a bare subscriber counting events): the loop
  lateness and CPU the engine and the feed cost by themselves, so what the dashboard adds is the difference.

Each run is a fresh interpreter (``python -m bench.dashboard_bench --one KIND SHAPE SECONDS``), as a dashboard is;
each figure is the median over ≥ 3 runs, the worst gap of every run beside it. Nothing here is asserted by the
tests (they check the harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._stats import percentile
from db import connect
from db.models import Event, EventType
from engine.engine import Engine
from engine.spec import WorkflowSpec

RATE = 2_000
TASKS = [f"agent-{i}" for i in range(8)]
SIZE = (160, 48)
TARGET_GAP_MS = 100.0
PROBE_S = 1 / 60

_release: asyncio.Event | None = None


async def hold(ctx: Any) -> None:
    """A task body that waits for the bench to finish, so its pane stays up while the feed runs."""
    assert _release is not None
    await _release.wait()


def workflow() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "dashboard-bench",
            "concurrency": len(TASKS),
            "agents": {"worker": {"kind": "python", "callable": "bench.dashboard_bench:hold"}},
            "tasks": [{"id": key, "agent": "worker"} for key in TASKS],
        }
    )


_STATES = (EventType.TASK_PAUSED, EventType.TASK_RESUMED, EventType.TASK_RETRYING, EventType.TASK_STARTED)


class Mix:
    """The feed's events, deterministic: the n-th event is always the same for a shape."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.lines = 0
        self._state = dict.fromkeys(TASKS, 0)
        self._attempt = dict.fromkeys(TASKS, 1)

    def event(self, n: int) -> tuple[str, str, dict[str, Any]]:
        task = TASKS[n % len(TASKS)]
        if n % 100 == 50:  # 20 a second: a state change, which retitles a pane
            kind = _STATES[self._state[task] % len(_STATES)]
            self._state[task] += 1
            if kind == EventType.TASK_RETRYING:
                return kind, task, {"error": "exit code 1", "delay_s": 0.5}
            if kind == EventType.TASK_STARTED:
                self._attempt[task] += 1
                return kind, task, {"attempt": self._attempt[task]}
            return kind, task, {}
        if n % 400 == 7:  # 5 a second: tokens and cost in a pane header
            return (
                EventType.LLM_USAGE,
                task,
                {"model": "bench", "input_tokens": 900, "output_tokens": 120, "cost_usd": 0.001},
            )
        if n % 20 == 3:  # 100 a second: a progress bar moves
            return EventType.TASK_PROGRESS, task, {"progress": (n % 1000) / 1000}
        stream = "stderr" if n % 10 == 9 else "stdout"
        count = 1 if self.shape == "line" else 1 + n % 6
        text = [f"{task} {n}.{i} " + "output " * (2 + (n + i) % 14) for i in range(count)]
        self.lines += count
        if self.shape == "line":
            return EventType.TASK_OUTPUT, task, {"stream": stream, "line": text[0]}
        return EventType.TASK_OUTPUT, task, {"stream": stream, "lines": text}


@dataclass
class Probe:
    """How late a 1/60 s sleep wakes on the running loop."""

    lateness: list[float] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + PROBE_S
            await asyncio.sleep(PROBE_S)
            self.lateness.append(max(0.0, time.perf_counter() - due))


async def feed(engine: Engine, workflow_id: str, shape: str, seconds: float, rate: float) -> tuple[int, int]:
    """Emit the mix at ``rate`` for ``seconds``; a late loop emits what is due at once, as the engine would."""
    mix = Mix(shape)
    start = time.perf_counter()
    total = int(seconds * rate)
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            kind, task, data = mix.event(sent)
            engine.recorder.emit(workflow_id, kind, task=task, agent="worker", data=data)
            sent += 1
        await asyncio.sleep(0.002)
    return sent, mix.lines


@dataclass
class Counter:
    """Counts events reaching a consumer, and their age on arrival."""

    count: int = 0
    ages: list[float] = field(default_factory=list)

    def __call__(self, events: list[Event]) -> None:
        now = time.time()
        self.count += len(events)
        self.ages.extend(now - event.ts.timestamp() for event in events[-50:])


async def _until(predicate: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.perf_counter() + limit_s
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def cpu_share(seconds: float = 0.3) -> float:
    """The share of a core this process gets now (spinning): 1.0 on an idle machine, less when others run.

    The figures of a run depend on it, so each run reports it.
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        pass
    return round((time.process_time() - cpu0) / (time.perf_counter() - wall0), 2)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def dashboard_run(shape: str, seconds: float, rate: float = RATE, tab: str = "agents") -> dict[str, Any]:
    """One run of the app under the feed, showing the agent panes (or the event log: ``tab="events"``)."""
    from tui.app import make_app  # the bench imports the UI only for this section

    global _release
    _release = asyncio.Event()
    with tempfile.TemporaryDirectory() as tmp:
        async with connect("mem://") as db, Engine(db, workdir_root=Path(tmp)) as engine:
            app = make_app(engine, start=workflow())
            async with app.run_test(size=SIZE) as pilot:
                assert app.feed is not None
                started = await _until(lambda: app.started_workflow is not None and _panes(app) == len(TASKS), 30)
                if not started:
                    raise RuntimeError("the bench workflow's panes did not appear within 30 s")
                if tab == "events":
                    await pilot.press("2")
                await pilot.pause(0.5)  # let the first layout settle
                frames: list[tuple[float, float]] = []  # (wall, CPU of the loop's thread) at each screen update
                original = app._display

                def display(screen: Any, renderable: Any) -> None:
                    if renderable is not None and not app._batch_count:
                        render = getattr(renderable, "render_segments", None)
                        if render is not None:  # what a real terminal driver would do with the update
                            render(app.console)
                        frames.append((time.perf_counter(), time.thread_time()))
                    original(screen, renderable)

                setattr(app, "_display", display)  # noqa: B010 - the bench times each screen update
                share = cpu_share()
                counter = Counter()
                screen: Any = app.screen  # the main screen publishes each frame's events to its followers
                screen.events.subscribe(screen, counter, immediate=True)
                probe = Probe()
                prober = asyncio.create_task(probe.run())
                assert app.started_workflow is not None
                cpu0, t0 = time.process_time(), time.perf_counter()
                sent, lines = await feed(engine, app.started_workflow, shape, seconds, rate)
                t1, cpu1 = time.perf_counter(), time.process_time()
                consumed_in_window = counter.count
                caught_up = await _until(lambda: counter.count >= sent, 60)
                backlog_s = time.perf_counter() - t1
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
                window = [f for f in frames if t0 <= f[0] <= t1]
                gaps = [b[0] - a[0] for a, b in itertools.pairwise(window)]
                gap_cpu = [b[1] - a[1] for a, b in itertools.pairwise(window)]
                _release.set()
                await asyncio.wait_for(engine.wait(app.started_workflow), 30)
    return {
        "frames": len(window),
        "gap_p50_ms": _ms(percentile(gaps, 50)),
        "gap_p99_ms": _ms(percentile(gaps, 99)),
        "gap_max_ms": _ms(max(gaps, default=0.0)),
        "gap_cpu_p99_ms": _ms(percentile(gap_cpu, 99)),
        "gap_cpu_max_ms": _ms(max(gap_cpu, default=0.0)),
        "lateness_p99_ms": _ms(percentile(probe.lateness, 99)),
        "lateness_max_ms": _ms(max(probe.lateness, default=0.0)),
        "sent_per_s": round(sent / (t1 - t0)),
        "lines_per_s": round(lines / (t1 - t0)),
        "consumed_per_s": round(consumed_in_window / (t1 - t0)),
        "age_p99_ms": _ms(percentile(counter.ages, 99)),
        "backlog_s": round(backlog_s, 2) if caught_up else None,
        "cpu": round((cpu1 - cpu0) / (t1 - t0), 2),
        "cpu_share_available": share,
    }


def _panes(app: Any) -> int:
    from tui.widgets.agent_grid import AgentGrid

    grids = app.screen.query(AgentGrid)
    return len(grids.first().visible_panes()) if grids else 0


async def peer_run(shape: str, seconds: float, rate: float = RATE) -> dict[str, Any]:
    """The same engine, workflow and feed with a bare subscriber instead of the app."""
    global _release
    _release = asyncio.Event()
    with tempfile.TemporaryDirectory() as tmp:
        async with connect("mem://") as db, Engine(db, workdir_root=Path(tmp)) as engine:
            subscription = engine.bus.subscribe()
            counter = Counter()
            started: set[str] = set()

            async def listen() -> None:
                async for event in subscription:
                    counter([event])
                    if event.type == "task.started":
                        started.add(event.task or "")

            listener = asyncio.create_task(listen())
            workflow_id = await engine.submit(workflow())
            if not await _until(lambda: len(started) == len(TASKS), 30):
                raise RuntimeError("the bench workflow's tasks did not start within 30 s")
            share = cpu_share()
            base = counter.count
            probe = Probe()
            prober = asyncio.create_task(probe.run())
            cpu0, t0 = time.process_time(), time.perf_counter()
            sent, lines = await feed(engine, workflow_id, shape, seconds, rate)
            t1, cpu1 = time.perf_counter(), time.process_time()
            consumed = counter.count - base
            prober.cancel()
            _release.set()
            await asyncio.wait_for(engine.wait(workflow_id), 30)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(prober, listener)
            await subscription.close()
    return {
        "lateness_p99_ms": _ms(percentile(probe.lateness, 99)),
        "lateness_max_ms": _ms(max(probe.lateness, default=0.0)),
        "sent_per_s": round(sent / (t1 - t0)),
        "lines_per_s": round(lines / (t1 - t0)),
        "consumed_per_s": round(consumed / (t1 - t0)),
        "cpu": round((cpu1 - cpu0) / (t1 - t0), 2),
        "cpu_share_available": share,
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (a run that never caught up counts as missing for ``backlog_s``)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    return out


async def in_own_process(kind: str, shape: str, seconds: float) -> dict[str, Any]:
    """One run in a fresh interpreter, as a user's dashboard runs: runs in one process would share what earlier
    apps left behind (Textual keeps a finished app reachable for a while, and the collector walks it)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dashboard_bench", "--one", kind, shape, str(seconds),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"dashboard bench run {kind}/{shape} failed:\n{err.decode(errors='replace')[-2000:]}")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


async def one(kind: str, shape: str, seconds: float) -> dict[str, Any]:
    """``kind``: ``peer`` (no app), ``agents`` (the panes on screen) or ``events`` (the event log on screen)."""
    if kind == "peer":
        return await peer_run(shape, seconds)
    return await dashboard_run(shape, seconds, tab=kind)


async def run(quick: bool, repeats: int = 3, shapes: tuple[str, ...] = ("line", "chunk")) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    results: dict[str, Any] = {}
    peer = [await in_own_process("peer", "chunk", seconds) for _ in range(repeats)]
    results["dashboard_peer_no_ui"] = {**median_of(peer), "rate_per_s": RATE, "seconds": seconds, "runs": repeats}
    for shape, tab in [(shape, "agents") for shape in shapes] + [("chunk", "events")]:
        runs = [await in_own_process(tab, shape, seconds) for _ in range(repeats)]
        med = median_of(runs)
        worst = max(r["gap_max_ms"] for r in runs)
        results[f"dashboard_{shape}" + ("_event_log" if tab == "events" else "")] = {
            **med,
            "gap_max_ms_per_run": [r["gap_max_ms"] for r in runs],
            "worst_gap_ms": worst,
            "rate_per_s": RATE,
            "seconds": seconds,
            "runs": repeats,
            "target_gap_ms": TARGET_GAP_MS,
            "met": worst <= TARGET_GAP_MS,
        }
    return results


if __name__ == "__main__":  # `python -m bench.dashboard_bench [--quick]`: this section alone
    from bench import dashboard_bench  # the engine imports ``hold`` from there, not from ``__main__``

    if sys.argv[1:2] == ["--one"]:  # one run, its figures as one JSON line (what ``in_own_process`` reads)
        kind, shape, secs = sys.argv[2], sys.argv[3], float(sys.argv[4])
        print(json.dumps(asyncio.run(dashboard_bench.one(kind, shape, secs))))
    else:
        print(json.dumps(asyncio.run(dashboard_bench.run("--quick" in sys.argv)), indent=2))
