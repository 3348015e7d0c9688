"""Metrics: counters and observations per agent and workflow, plus CPU and RSS of sandbox processes (psutil).

Samples are aggregated in memory — per (name, agent, workflow): count, sum, min, max — and written once per
interval as one ``agent_metric`` row each (``value`` is the sum, so summing rows sums samples; the mean is
``value / count``), so a busy engine writes a few rows a second however many tasks it runs (a row per sample was
7 % of its time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import psutil

from db._aio import wait_event
from db.errors import DatabaseUnavailable
from db.models import Metric
from db.stores import MetricStore

log = logging.getLogger(__name__)

#: Metric rows kept while the database is unreachable (the newest; a few minutes of a busy engine).
MAX_BUFFERED = 20_000

PidSource = Callable[[], Iterable[tuple[str, str, list[int]]]]  # (workflow, agent, pids) of running tasks


_Key = tuple[str, str | None, str | None]  # (name, agent, workflow)


class _Aggregate:
    __slots__ = ("count", "high", "low", "total")

    def __init__(self, value: float) -> None:
        self.count = 1
        self.total = self.low = self.high = value

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value


class MetricsCollector:
    def __init__(self, store: MetricStore, batch_size: int = 200, interval_s: float = 1.0) -> None:
        self._store = store
        self._open: dict[_Key, _Aggregate] = {}
        self._buffer: list[Metric] = []
        self._batch_size = batch_size
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._pid_sources: list[PidSource] = []
        self._procs: dict[int, psutil.Process] = {}
        self._stopping = asyncio.Event()
        self._down = False
        self._flushing = asyncio.Lock()

    def add_pid_source(self, source: PidSource) -> None:
        self._pid_sources.append(source)

    def count(self, name: str, value: float = 1.0, *, agent: str | None = None, workflow: str | None = None) -> None:
        self._add((name, agent, workflow), float(value))

    def observe(self, name: str, value: float, *, agent: str | None = None, workflow: str | None = None) -> None:
        self._add((name, agent, workflow), float(value))

    def _add(self, key: _Key, value: float) -> None:
        aggregate = self._open.get(key)
        if aggregate is None:
            self._open[key] = _Aggregate(value)
        else:
            aggregate.add(value)

    def _close_interval(self) -> None:
        """Turn the interval's aggregates into rows."""
        if not self._open:
            return
        aggregates, self._open = self._open, {}
        for (name, agent, workflow), agg in aggregates.items():
            self._buffer.append(
                Metric(
                    name=name,
                    value=agg.total,
                    agent=agent,
                    workflow=workflow,
                    count=agg.count,
                    min=agg.low,
                    max=agg.high,
                )
            )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="agentdeck-metrics")

    async def close(self) -> None:
        # Stopped between beats, never inside a flush (that could store a batch twice).
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            await self.flush()
        except DatabaseUnavailable as exc:
            log.warning("closing: %d metric rows not stored, the database is unreachable (%s)", len(self._buffer), exc)

    async def flush(self) -> None:
        """Store what was measured. One flush at a time: the periodic one and one asked for (a test, a bench,
        the end) each read the buffer's head before storing it, and together stored a batch twice."""
        self._close_interval()
        async with self._flushing:
            while self._buffer:
                batch = self._buffer[: self._batch_size]
                await self._store.record_many(batch)
                del self._buffer[: len(batch)]

    def sample_processes(self) -> None:
        """CPU percent and RSS of every running task's process tree, per agent."""
        for source in self._pid_sources:
            for workflow, agent, pids in source():
                cpu = rss = 0.0
                for pid in pids:
                    try:
                        proc = self._procs.get(pid) or psutil.Process(pid)
                        self._procs[pid] = proc
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        self._procs.pop(pid, None)
                if pids:
                    self.observe("cpu_percent", cpu, agent=agent, workflow=workflow)
                    self.observe("rss_mb", rss / 1_048_576, agent=agent, workflow=workflow)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await wait_event(self._stopping, self._interval)
            try:
                self.sample_processes()
                await self.flush()
            except DatabaseUnavailable as exc:  # one line per outage, not a traceback a second; kept for later
                if not self._down:
                    self._down = True
                    log.warning("metrics not stored while the database is unreachable (%s); kept for later", exc)
                self._buffer = self._buffer[-MAX_BUFFERED:]
                continue
            except Exception:
                log.exception("metrics flush failed")
            self._down = False
