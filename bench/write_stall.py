"""Write many events into one embedded store and watch for a write stall (issue 9, point 3).

Run: ``uv run python -m bench.write_stall --events 2500000`` (a temp ``surrealkv://`` store, removed after) or
``--db surrealkv:///some/dir`` to keep it. Every ``--report`` events it prints the rate, the process RSS and the
store's files (WAL segments, SSTables, value logs, their sizes); a watchdog thread prints a STALL line and the
same figures when no write has completed for ``--stall-after`` seconds, and ends the run with exit 1 after
``--give-up`` seconds of stall. The rows are what the engine writes for output: ``task.output`` events through
``SurrealEventStore.append_many``, ``data = {"stream": "stdout", "lines": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from surrealdb.request_message.message import RequestMessage
from surrealdb.request_message.methods import RequestMethod
from surrealdb_embedded import SyncEmbeddedDB

from db._memtable_flush import FlushingEngine
from db.connection import connect, embedded_path
from db.models import Event, EventType
from db.stores.surreal_core import SurrealEventStore


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def store_files(path: Path | None) -> str:
    """The store's files grouped by kind: ``wal 2x1.9G sst 0 vlog 1x12M``; exact names with ``--verbose``."""
    if path is None or not path.exists():
        return "-"
    groups: dict[str, list[int]] = {}
    for file in path.rglob("*"):
        if not file.is_file():
            continue
        kind = file.parent.name if file.parent != path else file.suffix.lstrip(".") or file.name
        groups.setdefault(kind, []).append(file.stat().st_size)
    return " ".join(f"{kind} {len(sizes)}x{_size(sum(sizes))}" for kind, sizes in sorted(groups.items()))


def list_files(path: Path | None) -> str:
    if path is None or not path.exists():
        return "-"
    rows = [f"    {f.relative_to(path)} {_size(f.stat().st_size)}" for f in sorted(path.rglob("*")) if f.is_file()]
    return "\n".join(rows)


def _size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit in ("B", "K") else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


_WORDS = [
    "compiling",
    "linking",
    "test",
    "passed",
    "failed",
    "warning",
    "error",
    "module",
    "build",
    "step",
    "cache",
    "hit",
    "miss",
]


def output_events(workflow: str, count: int, rng: random.Random) -> Iterator[Event]:
    """``task.output`` events as the engine writes them: chunks of 1-8 stdout lines of 30-120 characters."""
    for seq in range(1, count + 1):
        lines = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16)))[:120] for _ in range(rng.randint(1, 8))
        ]
        yield Event(
            seq=seq,
            type=EventType.TASK_OUTPUT,
            workflow=workflow,
            task=f"task-{seq % 200}",
            agent="builder",
            data={"stream": "stdout", "lines": lines},
        )


class ThreadedBlockingEngine:
    """The alternative to reopening (``--blocking-engine``): the blocking engine, which keeps its tokio runtime and
    so its flush and compaction tasks, behind the async engine's interface, each call in one worker thread.

    Not what agentdeck ships: its ``execute`` holds the GIL for the whole query, so the event loop stands still
    while any query runs, and its memtable grows to the full default size (1 GiB here) before a flush.
    """

    def __init__(self, url: str) -> None:
        self._native = SyncEmbeddedDB(url)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surrealkv-blocking")
        self.reopens = 0
        self.reopen_seconds = 0.0
        self.longest_reopen_s = 0.0
        self.flush_bytes = 0

    async def connect(self) -> None:
        return None

    async def execute(self, frame: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        return bytes(await loop.run_in_executor(self._pool, self._native.execute, frame))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._native.close)
        self._pool.shutdown(wait=True)


async def use_blocking_engine(conn: Any, url: str, namespace: str, database: str) -> ThreadedBlockingEngine:
    await conn._db.close()
    conn._db = None
    engine = ThreadedBlockingEngine(url)
    conn._db = engine
    await engine.execute(RequestMessage(RequestMethod.USE, namespace=namespace, database=database).WS_CBOR_DESCRIPTOR)
    return engine


def _reopens(engine: FlushingEngine | ThreadedBlockingEngine | None) -> str:
    if engine is None:
        return "-"
    mean = engine.reopen_seconds / engine.reopens if engine.reopens else 0.0
    return f"{engine.reopens} (mean {mean:.2f}s, max {engine.longest_reopen_s:.2f}s)"


class Watchdog(threading.Thread):
    """Reports a stall from outside the event loop, so a write that never returns is still seen."""

    def __init__(self, path: Path | None, stall_after: float, give_up: float) -> None:
        super().__init__(daemon=True, name="stall-watchdog")
        self.path = path
        self.stall_after = stall_after
        self.give_up = give_up
        self.last_done = time.monotonic()
        self.written = 0
        self.stalled = False
        self.finished = threading.Event()

    def run(self) -> None:
        reported = False
        while not self.finished.wait(1.0):
            idle = time.monotonic() - self.last_done
            if idle >= self.stall_after and not reported:
                reported = True
                self.stalled = True
                print(
                    f"STALL: no write completed for {idle:.0f}s after {self.written:,} events; "
                    f"rss {rss_mb():.0f} MB; files {store_files(self.path)}\n{list_files(self.path)}",
                    flush=True,
                )
            if idle < self.stall_after:
                reported = False
            if idle >= self.give_up:
                print(f"GAVE UP: stalled {idle:.0f}s at {self.written:,} events", flush=True)
                os._exit(1)


async def run(
    url: str,
    events: int,
    batch: int,
    report: int,
    stall_after: float,
    give_up: float,
    flush_mb: float | None,
    blocking_engine: bool,
) -> int:
    path = embedded_path(url.split("?", 1)[0])
    watchdog = Watchdog(path, stall_after, give_up)
    rng = random.Random(9)
    started = time.monotonic()
    async with connect(url) as db:
        store = SurrealEventStore(db)
        if blocking_engine:
            await use_blocking_engine(db.sdk, url, "agentdeck", "main")
        engine = db.sdk._db if isinstance(db.sdk._db, FlushingEngine | ThreadedBlockingEngine) else None
        if isinstance(engine, FlushingEngine) and flush_mb is not None:
            # 0 turns the reopen-to-flush workaround off, to reproduce the stall.
            engine.flush_bytes = int(flush_mb * 1024 * 1024) if flush_mb > 0 else 1 << 62
        watchdog.start()
        window_start, window_count = time.monotonic(), 0
        slowest = 0.0
        pending: list[Event] = []
        for event in output_events("wf-stall", events, rng):
            pending.append(event)
            if len(pending) < batch:
                continue
            began = time.monotonic()
            await store.append_many(pending)
            watchdog.last_done = time.monotonic()
            slowest = max(slowest, watchdog.last_done - began)
            watchdog.written += len(pending)
            window_count += len(pending)
            pending = []
            if watchdog.written % report < batch:
                now = time.monotonic()
                print(
                    f"{watchdog.written:>10,} events  {window_count / (now - window_start):>7,.0f}/s  "
                    f"slowest {slowest:5.2f}s  "
                    f"rss {rss_mb():>6.0f} MB  {now - started:>6.0f}s  reopens {_reopens(engine)}  "
                    f"files {store_files(path)}",
                    flush=True,
                )
                window_start, window_count, slowest = now, 0, 0.0
        if pending:
            await store.append_many(pending)
            watchdog.written += len(pending)
        stored = await db.query_one("RETURN count(SELECT id FROM event)")  # a full read: the store still answers
    watchdog.finished.set()
    print(
        f"done: {watchdog.written:,} events in {time.monotonic() - started:.0f}s, {stored:,} stored; "
        f"files {store_files(path)}",
        flush=True,
    )
    return 1 if watchdog.stalled else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a temp surrealkv:// store, removed after)")
    parser.add_argument("--events", type=int, default=2_500_000)
    parser.add_argument("--batch", type=int, default=50, help="events per append_many (the engine's batch)")
    parser.add_argument("--report", type=int, default=50_000, help="print a progress line every N events")
    parser.add_argument("--stall-after", type=float, default=30.0, help="seconds without a completed write")
    parser.add_argument("--give-up", type=float, default=300.0, help="exit 1 after this long stalled")
    parser.add_argument("--blocking-engine", action="store_true", help="the blocking engine in a thread instead")
    parser.add_argument(
        "--flush-mb", type=float, help="reopen to flush past this much WAL (default: db/_memtable_flush.py's); 0: never"
    )
    args = parser.parse_args(argv)
    tmp = None if args.db else tempfile.mkdtemp(prefix="agentdeck-stall-")
    url = args.db or f"surrealkv://{tmp}/state.db"
    print(f"writing {args.events:,} events in batches of {args.batch} to {url}", flush=True)
    try:
        return asyncio.run(
            run(
                url,
                args.events,
                args.batch,
                args.report,
                args.stall_after,
                args.give_up,
                args.flush_mb,
                args.blocking_engine,
            )
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
