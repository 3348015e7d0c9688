"""What an engine holds for tasks that run elsewhere: its E2B sandboxes and its dispatcher to workers.

Both are made on first use (a workflow that runs everything locally loads neither the e2b SDK nor a Redis client
for them) and closed with the engine: every E2B sandbox still held is killed, and the coordinator's ``alive`` key
goes, so workers stop its commands. Nothing remote outlives the engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from engine.sandbox.base import SandboxUnavailable

if TYPE_CHECKING:
    from engine.sandbox._e2b_pool import E2BPool
    from engine.workers.dispatcher import Dispatcher


class RemoteBackends:
    """The E2B pool and the worker dispatcher of one engine (``owner``), with Redis at ``redis_url`` if any."""

    def __init__(self, redis_url: str | None, owner: str) -> None:
        self.redis_url = redis_url
        self.owner = owner
        self._e2b: E2BPool | None = None
        self._dispatcher: Dispatcher | None = None
        self._sweeps: set[asyncio.Future[int]] = set()

    def e2b_pool(self) -> E2BPool:
        """The E2B sandboxes of this engine's tasks (made on first use, from ``E2B_*``/``AGENTDECK_E2B_*``)."""
        if self._e2b is None:
            from engine.sandbox._e2b_pool import E2BPool
            from engine.sandbox.e2b_settings import e2b_settings

            self._e2b = E2BPool(e2b_settings())
        return self._e2b

    def dispatcher(self) -> Dispatcher:
        """What hands this engine's ``sandbox: worker`` commands to workers (needs Redis)."""
        if self._dispatcher is None:
            if not self.redis_url:
                raise SandboxUnavailable(
                    "sandbox: worker needs Redis: give --redis URL or AGENTDECK_REDIS (workers take commands there)"
                )
            from engine.workers.dispatcher import Dispatcher

            self._dispatcher = Dispatcher(self.redis_url, self.owner)
        return self._dispatcher

    def fence_workers(self, workflow: str, previous_owner: str) -> None:
        """A workflow that runs on workers taken over from the engine ``previous_owner``: its commands still on
        workers are stopped before this engine hands out its own (``engine.workers.fence``)."""
        if self.redis_url:  # without Redis, the run's first command says what is missing
            self.dispatcher().fence(workflow, previous_owner)

    def sweep_e2b(self, directory: Path) -> None:
        """A workflow taken over (resumed, or adopted after a crash): kill the E2B sandboxes its tasks had before,
        which nobody holds now (a glob of the workflow's directory; nothing more when it used none)."""
        if not any(directory.glob(".*.agentdeck-e2b")):
            return
        sweeping = asyncio.ensure_future(self.e2b_pool().sweep(directory))
        self._sweeps.add(sweeping)
        sweeping.add_done_callback(self._sweeps.discard)

    async def close(self) -> None:
        if self._sweeps:
            await asyncio.gather(*self._sweeps, return_exceptions=True)
        if self._e2b is not None:
            await self._e2b.close()  # every E2B sandbox still held is killed: none outlives the engine
        if self._dispatcher is not None:
            await self._dispatcher.close()
