"""The replay's metrics panel: per agent, what the live Metrics tabs showed, as of the moment replayed.

One row per agent: tasks running, done and failed (from the replay's state, so they agree with the tree), the mean
task duration and queue wait so far, CPU and RSS of its processes (a sparkline of the last seconds of recorded time
and the latest sample) from the recording's ``agent_metric`` intervals, and LLM tokens and cost from its
``llm.usage`` events when it made calls. Metric rows are stamped when their one-second interval closed, so they
come up to a second after the events they measure, as they did live.

Compact on purpose (a few lines between the output and the event log): the live charts need more room than the
replay screen has beside the tree at 80x24.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from db.models import Event, Metric, TaskStatus
from engine.replay import ReplayState
from tui.status import UsageLedger, cost_text, tokens

SPARK = "▁▂▃▄▅▆▇█"
#: How many seconds of recorded time the CPU sparkline covers (one character a second).
SPARK_S = 8
#: A CPU or RSS sample older than this (recorded time) is not "now": the agent has no process running.
FRESH_S = 2.0


@dataclass
class AgentFigures:
    """One agent's figures at a moment of the replay."""

    agent: str
    running: int = 0
    done: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=lambda: [0.0, 0.0])  # sum, count
    waits: list[float] = field(default_factory=lambda: [0.0, 0.0])
    cpu: list[float] = field(default_factory=lambda: [0.0] * SPARK_S)  # per second, oldest first
    cpu_now: float | None = None
    rss_now: float | None = None

    @property
    def mean_duration(self) -> float | None:
        return self.durations[0] / self.durations[1] if self.durations[1] else None

    @property
    def mean_wait(self) -> float | None:
        return self.waits[0] / self.waits[1] if self.waits[1] else None


def figures(state: ReplayState, metrics: Iterable[Metric], now: datetime | None) -> dict[str, AgentFigures]:
    """Every agent's figures at ``now`` (the recorded time of the moment shown), from the state and the metric
    intervals recorded by then."""
    out: dict[str, AgentFigures] = {}
    for task in state.tasks.values():
        row = out.setdefault(task.agent, AgentFigures(task.agent))
        if task.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.WAITING):
            row.running += 1
        elif task.status is TaskStatus.COMPLETED:
            row.done += 1
        elif task.status is TaskStatus.FAILED:
            row.failed += 1
    for metric in metrics:
        row = out.setdefault(metric.agent or "?", AgentFigures(metric.agent or "?"))
        mean = metric.value / max(metric.count, 1)
        if metric.name == "task_duration_s":
            row.durations[0] += metric.value
            row.durations[1] += metric.count
        elif metric.name == "task_queue_wait_s":
            row.waits[0] += metric.value
            row.waits[1] += metric.count
        elif metric.name in ("cpu_percent", "rss_mb") and now is not None:
            age = (now - metric.ts) / timedelta(seconds=1)
            if age <= FRESH_S:  # rows come in time order: the newest fresh one is the latest sample
                if metric.name == "rss_mb":
                    row.rss_now = mean
                else:
                    row.cpu_now = mean
            if metric.name == "rss_mb":
                continue
            slot = SPARK_S - 1 - int(age)
            if 0 <= slot < SPARK_S:
                row.cpu[slot] = max(row.cpu[slot], mean)
    return out


def sparkline(values: list[float]) -> str:
    """``▁▂▅█``: each value against the largest (all ``▁`` when nothing ran)."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values)


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def task_counts(row: AgentFigures) -> Text:
    """``▶1 ✔2 ✘1``: running, done, failed (failed only when some did)."""
    text = Text(f"▶{row.running} ✔{row.done}")
    if row.failed:
        text.append(f" ✘{row.failed}", style="red")
    return text


class ReplayMetrics(Static):
    """Per-agent figures at the replay's moment (``show``); narrower than ``WIDE`` columns, the queue wait and half
    the sparkline give way."""

    DEFAULT_CSS = """
    ReplayMetrics { height: auto; max-height: 10; border: round $secondary; }
    """

    #: From this many columns of content on, the panel shows every figure.
    WIDE = 60

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.border_title = "metrics"
        #: The rows shown now, per agent (what a test reads).
        self.rows: dict[str, AgentFigures] = {}
        self._usage = UsageLedger()

    def show(self, state: ReplayState, metrics: Iterable[Metric], usage: Iterable[Event], now: datetime | None) -> None:
        before = (len(self.rows), bool(self._usage.agents))
        self.rows = figures(state, metrics, now)
        self._usage = UsageLedger()
        self._usage.consume(usage)
        # Laid out again only when its height may change (rows, the usage columns): a jump then repaints it alone.
        self.update(self.table(), layout=(len(self.rows), bool(self._usage.agents)) != before)

    def on_resize(self) -> None:
        self.update(self.table())

    def table(self) -> Table:
        wide = self.content_region.width >= self.WIDE
        spark = SPARK_S if wide else SPARK_S // 2
        llm = bool(self._usage.agents)
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False, header_style="bold")
        table.add_column("agent", no_wrap=True, overflow="ellipsis", ratio=1, min_width=5)
        table.add_column("tasks", no_wrap=True)
        table.add_column("avg s", justify="right", no_wrap=True)
        if wide:
            table.add_column("wait s", justify="right", no_wrap=True)
        table.add_column("cpu %", no_wrap=True)
        table.add_column("rss MB" if wide else "MB", justify="right", no_wrap=True)
        if llm:
            table.add_column("llm", no_wrap=True, overflow="ellipsis", ratio=1)
        for name, row in self.rows.items():
            cpu = f"{sparkline(row.cpu[-spark:])} {'–' if row.cpu_now is None else f'{row.cpu_now:.0f}'}"
            cells: list[str | Text] = [name, task_counts(row), seconds(row.mean_duration)]
            if wide:
                cells.append(seconds(row.mean_wait))
            cells += [cpu, "–" if row.rss_now is None else f"{row.rss_now:.0f}"]
            if llm:
                totals = self._usage.agents.get(name)
                both = totals.input_tokens + totals.output_tokens if totals else 0
                cells.append(f"{tokens(both)} tok {cost_text(totals)}" if totals else "")
            table.add_row(*cells)
        return table
