"""Keep an embedded ``surrealkv://`` store writable: flush its memtables by reopening the engine (issue 9).

Why this exists: surrealkv moves a full memtable to an SSTable on a tokio task that it spawns when the store
opens. surrealdb-embedded 3.0.0b10 opens the store inside a throwaway current-thread tokio runtime that is dropped
as soon as ``AsyncEmbeddedDB(url)`` returns, and dropping a runtime cancels its tasks, so while the process runs
no memtable is ever flushed. Once two full memtables wait (1 GiB each on a 16-64 GiB machine, 256 MiB on
4-16 GiB), surrealkv's write-stall controller waits for a flush that never comes and every later write hangs for
good. Measured with ``bench/write_stall.py``: 1,244,250 events, WAL 2 x 956 MB, no SSTable, no write completing.
The memtable size cannot be changed from here either: the URL's query keys are read as ``datastore_*`` and the
``surrealkv_*`` keys only arrive through a config map that the wheel never passes.

What does work is the shutdown path: closing the engine flushes every memtable to an SSTable synchronously, and
opening one lets a level compaction run while its short-lived runtime is alive. So ``FlushingEngine`` stands in
for the native engine handle, and whenever the write-ahead log holds more than ``flush_bytes`` of unflushed data
it closes and reopens the native engine, holding new requests at a gate and letting those in flight finish.
Nothing acknowledged is put at risk: a commit is written to the WAL (and, by default, fsynced) before it returns,
and a close deletes a WAL segment only after its memtable is in an SSTable. See bench/upstream/README.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Any

from surrealdb.request_message.message import RequestMessage
from surrealdb.request_message.methods import RequestMethod
from surrealdb_embedded import AsyncEmbeddedDB

_log = logging.getLogger(__name__)

MIB = 1024 * 1024
GIB = 1024 * MIB
# Checking the WAL's size is a directory listing: at most this often, after a request completes.
_CHECK_EVERY_S = 0.25


def surrealkv_memtable_bytes() -> int:
    """surrealkv's memtable size as SurrealDB 3.2 picks it from total memory (``kvs/surrealkv/cnf.rs``)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for below, size in ((GIB, 64 * MIB), (4 * GIB, 128 * MIB), (16 * GIB, 256 * MIB), (64 * GIB, GIB)):
        if memory < below:
            return size
    return 4 * GIB


def default_flush_bytes() -> int:
    """Reopen past this much unflushed WAL: 64 MiB, or half a memtable where that is smaller.

    Writes stall only once two full memtables wait, so this leaves more than a memtable and a half of room on any
    machine; smaller keeps the close's flush (and the memtable's share of RSS) short, larger reopens less often.
    """
    return min(64 * MIB, surrealkv_memtable_bytes() // 2)


def wal_bytes(store: Path) -> int:
    """Bytes in the store's WAL segments: what a close would flush (flushed segments are deleted)."""
    try:
        with os.scandir(store / "wal") as entries:
            return sum(entry.stat().st_size for entry in entries if entry.is_file())
    except FileNotFoundError:
        return 0


def _return_freed_memory() -> None:
    """Hand memory the closed engine freed back to the OS (glibc only; elsewhere a no-op).

    The engine allocates on its worker threads, and glibc keeps what each thread's arena freed: without this a
    store that reopened 23 times sat at 281 MB RSS, with it at 85 MB (250k events, 16 MiB threshold).
    """
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


class FlushingEngine:
    """The native engine handle (``AsyncEmbeddedDB``: ``connect``, ``execute``, ``close``), reopened to flush.

    Installed as the SDK connection's ``_db``, so every request — the SDK's and ``Database``'s own codec path —
    passes through ``execute``.
    """

    def __init__(self, native: Any, url: str, namespace: str, database: str, flush_bytes: int) -> None:
        self._native = native
        self._url = url
        self._store = Path(url.split("://", 1)[1].split("?", 1)[0])
        self._use_frame = RequestMessage(RequestMethod.USE, namespace=namespace, database=database).WS_CBOR_DESCRIPTOR
        self.flush_bytes = flush_bytes
        self.reopens = 0
        # How long requests were held, in all and at most, for the bench's figures.
        self.reopen_seconds = 0.0
        self.longest_reopen_s = 0.0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._next_check = 0.0
        self._reopening: asyncio.Task[None] | None = None
        self._closed = False

    async def connect(self) -> None:
        await self._native.connect()

    async def execute(self, frame: bytes) -> bytes:
        while not self._open.is_set():
            await self._open.wait()
        if self._closed:
            raise RuntimeError("Database connection is closed")
        self._in_flight += 1
        self._idle.clear()
        try:
            return bytes(await self._native.execute(frame))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
            self._maybe_reopen()

    async def close(self) -> None:
        """Let a reopen under way finish, then close the native engine for good."""
        if self._reopening is not None:
            await asyncio.shield(self._reopening)
        self._closed = True
        self._open.set()
        await self._native.close()

    async def flush(self) -> None:
        """Close and reopen now, whatever the WAL holds (tests, and callers about to write a burst)."""
        self._start_reopen()
        assert self._reopening is not None
        await asyncio.shield(self._reopening)

    def _maybe_reopen(self) -> None:
        if self._reopening is not None or self._closed:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _CHECK_EVERY_S
        if wal_bytes(self._store) >= self.flush_bytes:
            self._start_reopen()

    def _start_reopen(self) -> None:
        if self._reopening is None:
            self._open.clear()
            self._reopening = asyncio.get_running_loop().create_task(self._reopen(), name="surrealkv-flush")

    async def _reopen(self) -> None:
        started = time.monotonic()
        try:
            await self._idle.wait()
            if self._closed:
                return
            # Closing flushes every memtable to an SSTable and drops the WAL segments it covered.
            await self._native.close()
            self._native = None
            # Opening is blocking native work (WAL replay, a level compaction): off the event loop.
            native = await asyncio.to_thread(AsyncEmbeddedDB, self._url)
            await native.connect()
            await native.execute(self._use_frame)
            self._native = native
            self.reopens += 1
            await asyncio.to_thread(_return_freed_memory)
            held = time.monotonic() - started
            self.reopen_seconds += held
            self.longest_reopen_s = max(self.longest_reopen_s, held)
        except Exception:
            # Requests now fail (the SDK maps RuntimeError to ConnectionUnavailableError) instead of hanging; the
            # log says why, since nobody awaits this task.
            self._closed = True
            _log.exception("could not reopen the database at %s to flush it", self._store)
        except BaseException:
            self._closed = True
            raise
        finally:
            self._reopening = None
            self._open.set()


def install(conn: Any, url: str, namespace: str, database: str, flush_bytes: int | None = None) -> FlushingEngine:
    """Put a ``FlushingEngine`` in front of an embedded SDK connection's native engine; returns it."""
    engine = FlushingEngine(conn._db, url, namespace, database, flush_bytes or default_flush_bytes())
    conn._db = engine
    return engine
