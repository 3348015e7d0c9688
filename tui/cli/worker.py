"""``agentdeck worker``: the command that serves ``engine.workers.worker.Worker`` until SIGTERM or Ctrl-C.

It needs no database: workers only run commands and send back their output and end over Redis; the coordinator
(the engine that runs the workflow) stays the one writer of workflow state. ``--db`` is accepted (the command line
contract has it) and only checked.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from tui.cli._common import EXIT_INTERRUPTED, EXIT_OK


async def serve(url: str, concurrency: int) -> int:
    """Run a worker until a signal; returns the exit code (130 for Ctrl-C, 0 for SIGTERM)."""
    from engine.workers.worker import Worker, check_url

    check_url(url)
    worker = Worker(url, concurrency=concurrency)
    stop = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not got:
            print(f"agentdeck worker: {signal.Signals(signum).name}: stopping (its commands are left to other "
                  "workers)", file=sys.stderr)  # fmt: skip
        got.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await worker.connect()
        print(
            f"agentdeck worker {worker.name}: taking commands from Redis ({concurrency} at once); task directories "
            f"in {worker.root}",
            file=sys.stderr,
            flush=True,
        )
        await worker.serve(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_INTERRUPTED if signal.SIGINT in got else EXIT_OK


def run_worker(redis: str, concurrency: int) -> int:
    from tui.cli._common import run_async
    from tui.cli.commands_run import check_settings

    check_settings()
    logging.basicConfig(level=logging.INFO, format="agentdeck worker: %(message)s", stream=sys.stderr)
    return run_async(lambda: serve(redis, concurrency))
