"""The layer every embedder is wrapped in: an LRU cache of vectors by text, and batching of what is not cached.

- A text embedded before (and still among the last ``cache_size`` used) costs a dictionary look-up.
- One ``embed`` call sends all its distinct uncached texts to the model together, in chunks of ``batch_size``
  (sorted by length, so the texts of a chunk pad to similar lengths) to bound memory.
- Calls made at the same time, from many tasks or threads, are combined: whichever caller finds the model idle
  takes every text waiting at that moment (its own and the others') and runs them, while the rest wait for their
  texts' vectors. A text asked for twice while it is being embedded is embedded once. The model is thus used by
  one thread at a time, and a burst of ``embed_one`` calls becomes a few batched model calls.
- ``embed`` does its waiting and model work in a worker thread of its own, so neither the event loop nor the
  default thread pool (which the engine uses for file and database work) waits on the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.embeddings._base import Embedder, EmbedderError, Vectors

Vector = npt.NDArray[np.float32]

DEFAULT_CACHE_SIZE = 4096
DEFAULT_BATCH_SIZE = 64


@dataclass
class EmbedderStats:
    """What the cache saved: look-ups answered from it, and the work that reached the wrapped embedder."""

    hits: int = 0  # distinct texts of a call found in the cache
    misses: int = 0  # distinct texts sent to the model (a text joined while in flight counts once)
    model_calls: int = 0  # calls of the wrapped embedder's ``embed_sync``
    texts_embedded: int = 0  # texts in those calls


class _Slot:
    """Where the vector of one text in flight lands, for every caller waiting on that text."""

    __slots__ = ("done", "error", "vector")

    def __init__(self) -> None:
        self.done = False
        self.vector: Vector | None = None
        self.error: BaseException | None = None


class CachedEmbedder(Embedder):
    """``inner`` behind an LRU cache of ``cache_size`` texts, with batching and combining of concurrent calls."""

    def __init__(
        self, inner: Embedder, *, cache_size: int = DEFAULT_CACHE_SIZE, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.inner = inner
        self.name = inner.name
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.stats = EmbedderStats()
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._cond = threading.Condition()  # guards everything below and the stats
        self._pending: dict[str, _Slot] = {}  # texts no model call has taken yet, in arrival order
        self._in_flight: dict[str, _Slot] = {}  # pending texts and those in the running model call
        self._running = False  # a caller is running the model
        self._executor: ThreadPoolExecutor | None = None

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        found, waiting = self._claim(texts)
        if waiting:
            self._resolve(waiting)
        return self._assemble(texts, found, waiting)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Cache look-ups and joining in-flight texts happen here, on the loop (a short lock, never held during a
        # model call): a call whose texts are all cached never leaves the loop.
        found, waiting = self._claim(texts)
        if waiting:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{self.name}")
            await asyncio.get_running_loop().run_in_executor(self._executor, self._resolve, waiting)
        return self._assemble(texts, found, waiting)

    def cached(self, text: str) -> bool:
        """Whether ``text``'s vector is in the cache now."""
        with self._cond:
            return text in self._cache

    def clear_cache(self) -> None:
        """Forget every cached vector (texts in flight still complete)."""
        with self._cond:
            self._cache.clear()

    def _claim(self, texts: list[str]) -> tuple[dict[str, Vector], dict[str, _Slot]]:
        """Cached vectors of ``texts``, and a slot for each other distinct text (joining one in flight, or new)."""
        found: dict[str, Vector] = {}
        waiting: dict[str, _Slot] = {}
        with self._cond:
            for text in dict.fromkeys(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[text] = vector
                    self.stats.hits += 1
                    continue
                slot = self._in_flight.get(text)
                if slot is None:
                    slot = self._in_flight[text] = self._pending[text] = _Slot()
                    self.stats.misses += 1
                waiting[text] = slot
        return found, waiting

    def _resolve(self, waiting: dict[str, _Slot]) -> None:
        """Return once every slot in ``waiting`` is done, running the model on all pending texts when it is idle.

        Every text of an unfinished slot is either pending or in the running call, so whoever waits on it either
        becomes the next runner (taking it along) or is woken when the running call finishes it.
        """
        while True:
            with self._cond:
                while self._running and not all(slot.done for slot in waiting.values()):
                    self._cond.wait()
                if all(slot.done for slot in waiting.values()):
                    return
                batch = list(self._pending.items())
                self._pending.clear()
                self._running = True
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _run(self, batch: list[tuple[str, _Slot]]) -> None:
        """Embed ``batch`` in chunks, filling its slots and the cache; a failure fails the slots not yet filled."""
        batch.sort(key=lambda item: len(item[0]))
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            try:
                vectors = self.inner.embed_sync([text for text, _ in chunk])
                if vectors.shape != (len(chunk), self.dimension):
                    raise EmbedderError(
                        f"embedder {self.name!r} returned shape {vectors.shape} for {len(chunk)} texts, "
                        f"expected ({len(chunk)}, {self.dimension})"
                    )
            except BaseException as exc:
                with self._cond:
                    for text, slot in batch[start:]:
                        slot.error, slot.done = exc, True
                        self._in_flight.pop(text, None)
                    self._cond.notify_all()
                if isinstance(exc, Exception):
                    return  # each waiting caller raises it from _assemble
                raise  # KeyboardInterrupt and the like stop this thread too
            with self._cond:
                self.stats.model_calls += 1
                self.stats.texts_embedded += len(chunk)
                for (text, slot), row in zip(chunk, vectors, strict=True):
                    vector = np.array(row, dtype=np.float32)  # a copy: callers must not share the model's buffer
                    vector.flags.writeable = False
                    slot.vector, slot.done = vector, True
                    self._in_flight.pop(text, None)
                    self._remember(text, vector)
                self._cond.notify_all()

    def _remember(self, text: str, vector: Vector) -> None:
        """Put ``text`` in the cache as the most recently used, dropping the least recently used beyond the size."""
        if self.cache_size <= 0:
            return
        self._cache[text] = vector
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _assemble(self, texts: list[str], found: dict[str, Vector], waiting: dict[str, _Slot]) -> Vectors:
        """One row per text of ``texts``, in order; raises the model's error if one of them failed."""
        for text, slot in waiting.items():
            if slot.error is not None:
                raise slot.error
            assert slot.vector is not None  # done without an error means filled
            found[text] = slot.vector
        return np.stack([found[text] for text in texts])
