"""Fencing a workflow taken over from another engine: its commands still on workers are stopped first.

An engine that dies leaves its commands running on their workers until its ``alive`` key in Redis lapses (two
leases), and the database lets another engine resume the workflow before that (its lease is shorter, and an
embedded database is free as soon as the process is gone). Without a fence the same task would then run twice at
once, in the same directory when it lands on the same worker. So before the new engine hands out a command of
that workflow, ``stop_previous`` kills every run the previous engine still has of it — a never-taken entry is taken
off the stream, a taken one is killed where it runs (the same control a cancel sends) — and waits until each has
ended (its entry leaves the stream), at most a lease and the kill grace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

import redis.asyncio as aioredis

from engine.workers.protocol import Control, Keys, RunRequest, WorkerSettings, coordinator_token


class Dispatcher(Protocol):
    """What a fence uses of the engine's ``engine.workers.dispatcher.Dispatcher`` (which starts fences itself)."""

    client: aioredis.Redis
    keys: Keys
    settings: WorkerSettings

    async def control(self, run: str, action: Control) -> None: ...

    async def withdraw(self, entry: str) -> None: ...


log = logging.getLogger(__name__)

#: Entries read from the tasks stream at a time while looking for the previous engine's runs.
_PAGE = 500
#: Beyond a lease, how long a killed command's worker has to say it ended (its kill grace, a slow machine).
STOP_WAIT_S = 15.0


async def previous_runs(dispatcher: Dispatcher, workflow: str, previous_owner: str) -> dict[str, str]:
    """The entries (id → run) of ``workflow`` that the engine ``previous_owner`` put on the tasks stream and that
    have not ended (an ended run's entry is deleted with its acknowledgement)."""
    token = coordinator_token(previous_owner)
    found: dict[str, str] = {}
    start = "-"
    while True:
        read = await dispatcher.client.xrange(dispatcher.keys.tasks, min=start, max="+", count=_PAGE)
        page = cast(list[tuple[str, dict[str, str]]], read)  # decode_responses: strings
        for entry, fields in page:
            try:
                request = RunRequest.decode(fields)
            except ValueError:
                continue
            if request.coordinator == token and request.workflow == workflow:
                found[entry] = request.run
        if len(page) < _PAGE:
            return found
        start = f"({page[-1][0]}"


async def stop_previous(dispatcher: Dispatcher, workflow: str, previous_owner: str) -> int:
    """Kill what ``previous_owner`` still runs of ``workflow`` on workers and wait until it ended; returns how many
    runs were stopped. Gives up waiting (with a warning) after a lease and the kill grace."""
    runs = await previous_runs(dispatcher, workflow, previous_owner)
    if not runs:
        return 0
    keys = dispatcher.keys
    for entry, run in runs.items():
        await dispatcher.control(run, "kill")  # a worker running it kills it; one taking it later finds it killed
        held = await dispatcher.client.xpending_range(keys.tasks, keys.group, min=entry, max=entry, count=1)
        if not held:  # no worker has read it: off the stream (one reading it meanwhile has the kill already)
            await dispatcher.withdraw(entry)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + dispatcher.settings.lease + STOP_WAIT_S
    waiting = set(runs)
    while waiting:
        for entry in list(waiting):
            if not await dispatcher.client.xrange(keys.tasks, min=entry, max=entry):
                waiting.discard(entry)
        if not waiting:
            break
        if loop.time() > deadline:
            log.warning("workflow %s: %d command(s) of the engine it was taken from did not say they ended; running "
                        "it on regardless", workflow, len(waiting))  # fmt: skip
            break
        await asyncio.sleep(0.1)
    log.info(
        "workflow %s: stopped %d command(s) the engine it was taken from still ran on workers", workflow, len(runs)
    )
    return len(runs)
