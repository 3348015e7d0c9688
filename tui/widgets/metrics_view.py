"""Metrics: the roadmap's four dashboards as tabs of plotext charts (textual-plotext), and LLM usage per agent.
``[`` and ``]`` go through the tabs (``MainScreen``); the LLM tab explains itself until the first call.

Counts come from the event feed (tasks completed per second, running agents, event latency as seen on screen);
CPU and RSS of sandbox processes come from the ``agent_metric`` table, read by a one-shot timer re-armed after each
read (a slow read never overlaps the next). Charts redraw on new data and on resize only.

LLM tokens and cost come from the feed's ``llm.usage`` events, summed by the main screen's ``UsageLedger`` per task,
workflow and agent (the screen owns it and hands it to this view and to the agent panes): the "LLM usage" tab
tables them per agent and per workflow.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from db.models import TASK_RUN_END_EVENTS, Event, EventType
from db.stores import Stores
from tui.status import UsageLedger, UsageTotals, cost_text, tokens
from tui.widgets.chart import Chart, number

WINDOW_S = 60
NO_LLM_CALLS = (
    "No LLM calls yet.\n\nAgents of kind llm report their tokens and cost here as they call their model, per "
    "agent and per workflow (a workflow without one has nothing to show)."
)


class MetricsView(Vertical):
    """Agent performance · workflow health · system resources · user experience · LLM usage."""

    DEFAULT_CSS = """
    MetricsView .usage-tables DataTable { height: 1fr; }
    MetricsView #llm-empty { padding: 1 2; color: $text-muted; }
    """

    def __init__(self, stores: Stores, usage: UsageLedger | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stores = stores
        self.completed: deque[float] = deque(maxlen=10_000)
        self.failed: deque[float] = deque(maxlen=10_000)
        self.retried: deque[float] = deque(maxlen=10_000)
        self.durations: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=200))
        self.running: set[tuple[str, str]] = set()
        self.running_history: deque[tuple[float, int]] = deque(maxlen=600)
        self.latency_history: deque[tuple[float, float]] = deque(maxlen=600)
        self.resources: dict[str, list[tuple[float, float]]] = {}
        self.usage = usage if usage is not None else UsageLedger()  # the screen's; it consumes the events
        self._usage_shown = -1
        self._start = time.monotonic()

    def compose(self) -> ComposeResult:
        # Short names, so the five tabs fit beside the tree at 80 columns; [ and ] go through them.
        with TabbedContent(id="metric-tabs"):
            with TabPane("Agents", id="m-agents"), Grid(classes="charts"):
                yield Chart("task duration by agent", "s", id="chart-durations")
                yield Chart("running agents", "tasks", counts=True, id="chart-running")
            with TabPane("Health", id="m-health"), Grid(classes="charts"):
                yield Chart("tasks completed per second", "tasks/s", counts=True, id="chart-throughput")
                yield Chart("failures and retries per second", "/s", counts=True, id="chart-failures")
            with TabPane("System", id="m-system"), Grid(classes="charts"):
                yield Chart("CPU of sandbox processes", "%", id="chart-cpu")
                yield Chart("RSS of sandbox processes", "MB", id="chart-rss")
            with TabPane("Latency", id="m-ux"), Grid(classes="charts"):
                yield Chart("event latency: emitted → on screen", "ms", id="chart-latency")
            with TabPane("LLM", id="m-llm"), Vertical(classes="usage-tables"):
                yield Static(NO_LLM_CALLS, id="llm-empty")
                yield DataTable(id="llm-agents", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="llm-workflows", cursor_type="row", zebra_stripes=True)

    def cycle_tab(self, step: int) -> None:
        """The next (``step`` 1) or previous (-1) chart tab."""
        tabs = self.query_one("#metric-tabs", TabbedContent)
        order = [pane.id for pane in tabs.query(TabPane) if pane.id]
        if tabs.active in order:
            tabs.active = order[(order.index(tabs.active) + step) % len(order)]
            self.redraw()

    def on_mount(self) -> None:
        for table_id, first in (("#llm-agents", "agent"), ("#llm-workflows", "workflow")):
            # query, not query_one: an app quitting as the screen mounts has already removed the tables
            for table in self.query(table_id).results(DataTable):
                table.add_columns(first, "calls", "tokens in", "out", "cost")  # fits 100 columns
                table.display = False  # until the first call: the empty state explains instead
        self.set_interval(1.0, self.redraw)
        self.set_timer(2.0, self._read_resources)

    def consume(self, events: list[Event]) -> None:
        now = time.monotonic()
        for event in events:
            if event.task is None:
                continue
            key = (event.workflow, event.task)
            if event.type == EventType.TASK_STARTED:
                self.running.add(key)
            elif event.type in TASK_RUN_END_EVENTS:
                self.running.discard(key)
                if event.type == EventType.TASK_COMPLETED:
                    self.completed.append(now)
                    self.durations[event.agent or "?"].append(float(event.data.get("duration_s", 0.0)))
                elif event.type == EventType.TASK_FAILED:
                    self.failed.append(now)
            elif event.type == EventType.TASK_RETRYING:
                self.retried.append(now)

    def record_latency(self, latency_s: float) -> None:
        self.latency_history.append((time.monotonic(), latency_s * 1000))

    def sparkline_data(self) -> tuple[list[float], list[float]]:
        """(completions per second, running agents) over the last minute, for the header sparklines."""
        now = time.monotonic()
        rate = [float(sum(1 for t in self.completed if now - s - 1 < t <= now - s)) for s in range(WINDOW_S, 0, -1)]
        running = [float(n) for _, n in list(self.running_history)[-WINDOW_S:]]
        return rate, [0.0] * (WINDOW_S - len(running)) + running  # always a full minute: idle frames are equal

    def redraw(self) -> None:
        now = time.monotonic()
        self.running_history.append((now, len(self.running)))
        xs = [float(s) for s in range(-WINDOW_S + 1, 1)]

        def per_second(stamps: deque[float]) -> list[float]:
            return [float(sum(1 for t in stamps if now + s - 1 < t <= now + s)) for s in range(-WINDOW_S + 1, 1)]

        active = self.query_one("#metric-tabs", TabbedContent).active if self.is_mounted else ""
        if active == "m-health":
            self.query_one("#chart-throughput", Chart).update_series({"completed": (xs, per_second(self.completed))})
            self.query_one("#chart-failures", Chart).update_series(
                {"failed": (xs, per_second(self.failed)), "retried": (xs, per_second(self.retried))}
            )
        if active in ("m-agents", ""):
            agents = sorted(a for a, d in self.durations.items() if d)
            p50 = [percentile(self.durations[a], 50) for a in agents]
            p95 = [percentile(self.durations[a], 95) for a in agents]
            slowest = f"slowest p95 {number(round(max(p95), 2))}" if p95 else ""
            self.query_one("#chart-durations", Chart).update_bars(agents, {"p50": p50, "p95": p95}, slowest)
            hist = [(t - now, float(n)) for t, n in self.running_history if now - t <= WINDOW_S]
            self.query_one("#chart-running", Chart).update_series(
                {"running": ([x for x, _ in hist], [y for _, y in hist])}
            )
        if active == "m-llm":
            self.show_usage()
        if active == "m-ux":
            lat = [(t - now, ms) for t, ms in self.latency_history if now - t <= WINDOW_S]
            self.query_one("#chart-latency", Chart).update_series(
                {"latency": ([x for x, _ in lat], [y for _, y in lat])}
            )

    def show_usage(self) -> None:
        """Fill the LLM usage tables (only when a ``llm.usage`` event arrived since they were filled)."""
        if self._usage_shown == self.usage.version:
            return
        self._usage_shown = self.usage.version
        calls = bool(self.usage.agents)
        self.query_one("#llm-empty", Static).display = not calls
        for table_id, sums in (("#llm-agents", self.usage.agents), ("#llm-workflows", self.usage.workflows)):
            table = self.query_one(table_id, DataTable)
            table.display = calls
            table.clear()
            for name, totals in sorted(sums.items(), key=_by_cost):
                counts = (str(totals.calls), tokens(totals.input_tokens), tokens(totals.output_tokens))
                table.add_row(name, *counts, cost_text(totals))

    async def _read_resources(self) -> None:
        try:
            since = datetime.now(UTC) - timedelta(seconds=WINDOW_S)
            now = datetime.now(UTC)
            for name, chart_id in (("cpu_percent", "#chart-cpu"), ("rss_mb", "#chart-rss")):
                samples = await self.stores.metrics.query(name, since=since, limit=2_000)
                per_agent: dict[str, tuple[list[float], list[float]]] = {}
                for sample in samples:
                    xs, ys = per_agent.setdefault(sample.agent or "?", ([], []))
                    xs.append((sample.ts - now).total_seconds())
                    ys.append(sample.value / max(sample.count, 1))  # rows are sums over an interval
                self.query_one(chart_id, Chart).update_series(per_agent)
        finally:
            if self.is_mounted:
                self.set_timer(2.0, self._read_resources)  # re-armed only after this read finished


def _by_cost(item: tuple[str, UsageTotals]) -> tuple[float, str]:
    return (-item[1].cost_usd, item[0])  # the most expensive first


def percentile(values: deque[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; 0 for none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
