"""``LiveWatcher``: change watching on a SurrealDB server, through a server restart or a network outage.

``LIVE SELECT`` notifications wake a CHANGEFEED read (``db.watch``). A live query belongs to its websocket
session: when the connection drops, the server forgets it, and the SDK's reconnected socket is a new session
without it (users report exactly this: live queries silently lost on reconnect). So when a read fails because the
database is unreachable, or a live query's stream ends, the watcher waits with backoff until the server answers
again, registers its live queries anew, and reads the feed on from the position it had reached: nothing committed
meanwhile is missed, because the feed, not the notifications, is what is read. While notifications are missing
for any reason, the feed is still read at ``SAFETY_BEAT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from db._aio import wait_event
from db.errors import DatabaseUnavailable
from db.watch import Change, ChangeWatcher, _check_table, _Feed

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


class _LiveQueries:
    """The live queries of one watch: registered, pumped into ``wake``, registered again after a reconnect."""

    def __init__(self, watcher: LiveWatcher, tables: Sequence[str], wake: asyncio.Event) -> None:
        self.watcher = watcher
        self.tables = tables
        self.wake = wake
        self.ids: list[Any] = []
        self.pumps: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        sdk = self.watcher.sdk
        self.ids = []
        try:
            for table in self.tables:
                self.ids.append(await sdk.live(table))
        except BaseException:  # the ones registered before the failure go too: a retry registers them all again
            for live_id in self.ids:
                with contextlib.suppress(Exception):
                    await sdk.kill(live_id)
            self.ids = []
            raise
        self.pumps = [
            asyncio.create_task(self._pump(live_id), name=f"agentdeck-live-{table}")
            for live_id, table in zip(self.ids, self.tables, strict=True)
        ]
        self.watcher.registrations += 1

    async def _pump(self, live_id: Any) -> None:
        async for _ in await self.watcher.sdk.subscribe_live(live_id):
            self.wake.set()

    @property
    def broken(self) -> bool:
        """A live query's stream ended or failed (its session is gone): notifications no longer come."""
        return any(p.done() and not p.cancelled() for p in self.pumps)

    async def close(self, kill: bool = True) -> None:
        for task in self.pumps:
            task.cancel()
        for task in self.pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if kill:
            for live_id in self.ids:
                with contextlib.suppress(Exception):
                    await self.watcher.sdk.kill(live_id)
        self.pumps, self.ids = [], []


class LiveWatcher(ChangeWatcher):
    """LIVE SELECT notifications wake a CHANGEFEED read (servers); see the module's docstring."""

    # If a notification is ever lost (a dropped socket), the feed is still read at this beat.
    SAFETY_BEAT_S = 1.0
    FASTEST_S = 0.005
    #: How many times this watcher registered its live queries (once, plus once per reconnect): tests read it.
    registrations = 0

    @property
    def sdk(self) -> Any:
        return self._db.sdk

    def watch(self, table: str, since: int | None = None) -> AsyncGenerator[Change, None]:
        return self.watch_many((table,), since)

    async def watch_many(self, tables: Sequence[str], since: int | None = None) -> AsyncGenerator[Change, None]:
        for table in tables:
            _check_table(table)
        wake = asyncio.Event()
        live = _LiveQueries(self, tables, wake)
        await live.open()  # a server that cannot be reached at all is the caller's error, as before
        try:
            start = await self.position() if since is None else since
            feeds = {table: _Feed(start) for table in tables}
            held: list[Change] = []
            delay = self.FASTEST_S
            while True:
                try:
                    ready, held = await self._merged_round(tables, feeds, held)
                except DatabaseUnavailable as exc:
                    if self._db.closed:
                        raise
                    await self._reconnect(live, str(exc))
                    continue
                for change in ready:
                    yield change
                delay = self.FASTEST_S if ready or held else min(delay * 2, self.SAFETY_BEAT_S)
                # Not asyncio.wait_for: on 3.11 it swallows a cancellation that lands as a notification
                # arrives, and the watch then never ends (its reader's ``await`` hung for good).
                if await wait_event(wake, delay):
                    wake.clear()
                    delay = self.FASTEST_S
                if live.broken:
                    await self._reconnect(live, "a live query's stream ended")
        finally:
            await live.close()

    async def _reconnect(self, live: _LiveQueries, why: str) -> None:
        """Wait until the server answers, then register the live queries again (the feed is read on after)."""
        await live.close(kill=False)  # their session is gone, or going: nothing to kill there
        log.warning("change watch on %s interrupted (%s): waiting for the database", ", ".join(live.tables), why)
        delay = _RETRY_FIRST_S
        while True:
            await asyncio.sleep(delay)
            try:
                # A statement that needs the database: on a new session it fails with "Specify a namespace", and
                # ``Database.run`` then signs in and selects them again (``live`` alone would just fail).
                await self._db.query("INFO FOR DB")
                await live.open()
            except DatabaseUnavailable:
                await live.close(kill=False)
                delay = min(_RETRY_MAX_S, delay * 2)
                continue
            except Exception as exc:  # the SDK's own errors while its socket comes back
                log.debug("re-registering live queries failed: %r", exc)
                await live.close(kill=False)
                delay = min(_RETRY_MAX_S, delay * 2)
                continue
            log.info("change watch on %s resumed: live queries registered again", ", ".join(live.tables))
            live.wake.set()  # read what was committed meanwhile at once
            return
