"""Minimal reproduction: surrealdb-embedded never flushes a surrealkv memtable, so writes hang after two fill up.

Needs only ``pip install surrealdb==3.0.0b10 surrealdb-embedded==3.0.0b10`` (no agentdeck code). Run:
``python bench/upstream/surrealkv_flush_stall.py [DIR]``. It inserts schemaless rows of ~3 KB in statements of
200 into ``surrealkv://DIR`` (a temp dir by default, removed after) and prints the store's WAL segments and
SSTables as it goes. Expected on a healthy engine: when the WAL rotates (the first memtable is full) an SSTable
appears within moments and writing goes on. Seen with 3.0.0b10 (core 3.2.4, surrealkv 0.21.4): the WAL rotates,
no SSTable is ever written, and after the second rotation the next INSERT never returns (exit 1 after
``STALL_S``). A store that is closed and reopened instead flushes on close: run with ``--reopen-every 100`` to
see the SSTables appear and the writes go on. ``--blocking`` drives the blocking engine (``Surreal``, whose
handle keeps its tokio runtime) from a worker thread instead: it flushes in the background and never stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from surrealdb import AsyncSurreal, Surreal

ROWS_PER_STATEMENT = 200
VALUE = "x" * 3000  # inline in the memtable (below surrealkv's 4 KiB value-log threshold)
STALL_S = 60.0


def files(store: Path) -> str:
    wal = sorted((store / "wal").glob("*.wal")) if (store / "wal").exists() else []
    sst = sorted((store / "sstables").glob("*.sst")) if (store / "sstables").exists() else []
    sizes = ", ".join(f"{p.stat().st_size / 1e6:.0f} MB" for p in wal)
    return f"WAL segments [{sizes}], SSTables {len(sst)}"


class Blocking:
    """The blocking engine behind the async calls this script makes (each call in a worker thread)."""

    def __init__(self, url: str) -> None:
        self.db: Any = Surreal(url)

    async def connect(self) -> None:
        await asyncio.to_thread(self.db.connect)

    async def use(self, namespace: str, database: str) -> None:
        await asyncio.to_thread(self.db.use, namespace, database)

    async def query_raw(self, sql: str, vars: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self.db.query_raw, sql, vars)

    async def close(self) -> None:
        await asyncio.to_thread(self.db.close)
        self.db._db = None  # drop the native handle now, not at interpreter teardown


async def open_store(store: Path, blocking: bool) -> Any:
    db = Blocking(f"surrealkv://{store}") if blocking else AsyncSurreal(f"surrealkv://{store}")
    await db.connect()
    await db.use("repro", "repro")
    return db


async def close_store(db: Any) -> None:
    await db.close()
    db._db = None  # drop the native handle now, not at interpreter teardown


async def main(store: Path, statements: int, reopen_every: int, blocking: bool) -> int:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"total memory {memory / 2**30:.1f} GiB; surrealkv's memtable is sized from it (1 GiB at 16-64 GiB)")
    db = await open_store(store, blocking)
    started = time.monotonic()
    for n in range(1, statements + 1):
        rows = [{"n": n * ROWS_PER_STATEMENT + i, "v": VALUE} for i in range(ROWS_PER_STATEMENT)]
        try:
            reply = await asyncio.wait_for(db.query_raw("INSERT INTO t $rows RETURN NONE", {"rows": rows}), STALL_S)
            assert reply["result"][0]["status"] == "OK", reply
        except TimeoutError:
            print(
                f"STALL: INSERT {n} did not return in {STALL_S:.0f}s; {files(store)}; store left at {store}", flush=True
            )
            os._exit(1)  # the stalled native call cannot be closed cleanly
        if reopen_every and n % reopen_every == 0:
            await close_store(db)  # closing flushes every memtable to an SSTable
            db = await open_store(store, blocking)
        if n % 100 == 0:
            mb = n * ROWS_PER_STATEMENT * len(VALUE) / 1e6
            print(f"{n:>6} statements, {mb:>6.0f} MB written, {time.monotonic() - started:>5.0f}s: {files(store)}")
    await close_store(db)
    print(f"done: {statements} statements; after close: {files(store)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a temp dir, removed after)")
    parser.add_argument("--statements", type=int, default=6000, help="INSERT statements (200 rows each)")
    parser.add_argument("--reopen-every", type=int, default=0, help="close and reopen after this many statements")
    parser.add_argument("--blocking", action="store_true", help="use the blocking engine from a worker thread")
    args = parser.parse_args()
    tmp = None if args.dir else tempfile.mkdtemp(prefix="surrealkv-stall-")
    try:
        sys.exit(asyncio.run(main(Path(args.dir or f"{tmp}/store"), args.statements, args.reopen_every, args.blocking)))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
