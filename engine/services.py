"""What a workflow run uses of the engine that hosts it: ``RunServices``.

``WorkflowRun`` and the controls' shared steps (``engine.run_controls``) are typed against this protocol, not
against ``engine.engine.Engine``, so the run modules do not import the engine that imports them (no import cycle
inside ``engine/``; an import-linter contract holds it). ``Engine`` satisfies it structurally.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.graph.threads import LiveRun, ThreadSource

if TYPE_CHECKING:
    from db.stores import Stores
    from engine.events import EventRecorder
    from engine.graph.approvals import Approvals
    from engine.memory import MemoryService
    from engine.metrics import MetricsCollector
    from engine.sandbox._e2b_pool import E2BPool
    from engine.settings import EngineSettings
    from engine.workers.dispatcher import Dispatcher


class RunServices(ThreadSource, Protocol):
    """The engine's parts a run works with: its stores and event recorder (the one write path), metrics, memory,
    approvals and settings; where task directories live and what sandboxes must not see; and the runs live here."""

    @property
    def stores(self) -> Stores: ...
    @property
    def recorder(self) -> EventRecorder: ...
    @property
    def metrics(self) -> MetricsCollector: ...
    @property
    def memory(self) -> MemoryService: ...
    @property
    def approvals(self) -> Approvals: ...
    @property
    def settings(self) -> EngineSettings: ...
    @property
    def saver(self) -> Any: ...
    @property
    def runs(self) -> Mapping[str, LiveRun]: ...
    @property
    def sandbox_hidden(self) -> list[Path]: ...

    def workdir_for(self, workflow: str, task: str) -> Path: ...

    def e2b_pool(self) -> E2BPool: ...

    def worker_dispatcher(self) -> Dispatcher: ...

    def forget(self, run: LiveRun) -> None: ...

    async def watch_seen(self, workflow: str) -> None:
        """Once the watchpoints have seen every event of ``workflow`` so far (``WatchManager.seen``)."""
