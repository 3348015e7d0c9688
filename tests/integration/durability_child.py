"""A writer that is killed mid-run, for tests/integration/test_durability.py.

``python -m tests.integration.durability_child URL --batches K [--self-kill] [--flush-bytes N]`` opens ``URL`` the
way agentdeck does (``db.connect``), appends batches of ``BATCH`` ``task.output`` events with
``SurrealEventStore.append_many`` (seq 1, 2, ... in order) and prints ``acked N`` (flushed) after the N-th batch's
``await`` returns. With ``--self-kill`` it SIGKILLs itself the moment the K-th await returns; without it, it keeps
writing until the parent kills it. ``--flush-bytes`` shrinks the reopen-to-flush threshold
(db/_memtable_flush.py) so that kills also land while the engine closes, flushes and reopens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from db._memtable_flush import FlushingEngine
from db.connection import connect
from db.models import Event
from db.stores.surreal_core import SurrealEventStore

BATCH = 50
WORKFLOW = "wf-durability"


def batch_events(number: int) -> list[Event]:
    """Batch ``number`` (from 1): seqs ``(number - 1) * BATCH + 1`` .. ``number * BATCH``."""
    first = (number - 1) * BATCH + 1
    return [
        Event(
            seq=seq,
            type="task.output",
            workflow=WORKFLOW,
            task="writer",
            data={"stream": "stdout", "lines": [f"line {seq} " + "x" * 80, f"line {seq}b"]},
        )
        for seq in range(first, first + BATCH)
    ]


async def write(url: str, batches: int, self_kill: bool, flush_bytes: int | None) -> None:
    async with connect(url) as db:
        engine = getattr(db.sdk, "_db", None)
        if flush_bytes is not None and isinstance(engine, FlushingEngine):
            engine.flush_bytes = flush_bytes
        store = SurrealEventStore(db)
        print("open", flush=True)
        number = 0
        while self_kill is False or number < batches:
            number += 1
            await store.append_many(batch_events(number))
            if self_kill and number == batches:
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"acked {number}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--batches", type=int, default=0)
    parser.add_argument("--self-kill", action="store_true")
    parser.add_argument("--flush-bytes", type=int)
    args = parser.parse_args()
    asyncio.run(write(args.url, args.batches, args.self_kill, args.flush_bytes))
    sys.exit(0)


if __name__ == "__main__":
    main()
