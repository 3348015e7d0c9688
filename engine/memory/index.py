"""The in-process vector index over agent memories: approximate search (usearch's HNSW) with filters, kept in step
with the ``agent_memory`` table by the memory service (built from it at start, updated on every write, hide and
expiry).

SurrealDB stays the source of truth; this index exists because its own HNSW index could not meet the target
(measured here: p50 ~32 ms on 10k vectors, ~900 ms with a filter beside the KNN; the target is p99 <= 10 ms at
100k with filters). Filters are columns of numpy arrays (agent, type, workflow, time, hidden, expiry), one mask per
query. A query whose filter leaves few memories is answered exactly over those (fast when they are few, and
exact); otherwise the HNSW graph is asked for enough candidates that ``k`` of them pass the filter (more for a
narrower filter, again wider when too few did), and the candidates are re-scored exactly against the float32
vectors kept here, so the graph can hold half-size (f16) vectors without the scores losing precision.
``agentdeck bench --only memory`` measures p50/p99 and recall@10 against exact search next to raw usearch and
hnswlib on the same vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from usearch.index import Index

Vector = np.ndarray[Any, np.dtype[np.float32]]

#: At or below this many memories passing a filter, search is exact over them (a gather and one matrix-vector
#: product: ~1 ms for 4,096 x 384 here), which beats widening the graph search for a narrow filter.
EXACT_BELOW = 4_096
#: The graph's breadth when adding (usearch's ``expansion_add``, hnswlib's ``ef_construction``). Measured at 100k
#: (bench/memory_bench.py): 64 built 1.7x faster but left recall@10 at 0.948-0.971 across filters; 128 gave
#: 0.989-0.998 at the same search cost.
EXPANSION_ADD = 128
#: The graph search's breadth (usearch's ``expansion_search``): with a graph built at 128, 96 gave recall@10 0.996
#: unfiltered at p50 0.5-0.7 ms; wider searches barely help a graph built narrower.
EXPANSION_SEARCH = 96


@dataclass(frozen=True)
class Filters:
    """What a search is limited to; ``None`` means no limit on that column."""

    agent: str | None = None
    memory_type: str | None = None
    workflow: str | None = None
    since: float | None = None  # unix seconds: created at or after
    include_hidden: bool = False
    now: float | None = None  # unix seconds: memories expired by then are left out; None keeps them


_ONE_BLAS_THREAD: list[object] = []


def _one_blas_thread() -> None:
    """Limit numpy's BLAS to one thread, once per process. A search's score product is a few thousand rows: split
    over threads on a busy machine it waited for them (p99 12-21 ms with OpenBLAS's default, 0.3-2 ms on one
    thread), and nothing else in the engine uses BLAS (the embedder runs on onnxruntime's own threads)."""
    if not _ONE_BLAS_THREAD:
        _ONE_BLAS_THREAD.append(threadpool_limits(limits=1, user_api="blas"))


class MemoryIndex:
    """Memories by slot: id, vector (float32, unit length) and the filter columns; an HNSW graph over the vectors."""

    def __init__(self, dimension: int, *, capacity: int = 1_024) -> None:
        _one_blas_thread()
        self.dimension = dimension
        self._graph = Index(
            ndim=dimension,
            metric="ip",
            dtype="f16",
            connectivity=16,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._codes: dict[str, dict[str | None, int]] = {
            "agent": {None: -1},
            "type": {None: -1},
            "workflow": {None: -1},
        }
        self._vectors = np.zeros((capacity, dimension), dtype=np.float32)
        self._agent = np.zeros(capacity, dtype=np.int32)
        self._type = np.zeros(capacity, dtype=np.int32)
        self._workflow = np.zeros(capacity, dtype=np.int32)
        self._created = np.zeros(capacity, dtype=np.float64)
        self._expires = np.zeros(capacity, dtype=np.float64)
        self._hidden = np.zeros(capacity, dtype=bool)
        self._alive = np.zeros(capacity, dtype=bool)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._slot

    # ---- writes ------------------------------------------------------------------------------------------------

    def add_many(
        self,
        ids: list[str],
        vectors: Vector | list[Vector],
        *,
        agents: list[str],
        types: list[str],
        workflows: list[str | None],
        created: list[float],
        expires: list[float | None],
        hidden: list[bool],
    ) -> None:
        """Add memories (ids already in the index are left as they are); vectors are normalised here."""
        fresh = [i for i, memory_id in enumerate(ids) if memory_id not in self._slot]
        if not fresh:
            return
        matrix = np.asarray(np.stack([vectors[i] for i in fresh]) if len(fresh) != len(ids) else vectors, np.float32)
        matrix = matrix.reshape(len(fresh), -1)
        if matrix.shape[1] != self.dimension:
            raise ValueError(f"a {matrix.shape[1]}-d vector cannot join an index of {self.dimension}-d vectors")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        start = len(self._ids)
        self._grow(start + len(fresh))
        slots = np.arange(start, start + len(fresh))
        self._vectors[slots] = matrix
        self._agent[slots] = [self._code("agent", agents[i]) for i in fresh]
        self._type[slots] = [self._code("type", types[i]) for i in fresh]
        self._workflow[slots] = [self._code("workflow", workflows[i]) for i in fresh]
        self._created[slots] = [created[i] for i in fresh]
        self._expires[slots] = [math.inf if expires[i] is None else expires[i] for i in fresh]
        self._hidden[slots] = [hidden[i] for i in fresh]
        self._alive[slots] = True
        for slot, i in zip(slots.tolist(), fresh, strict=True):
            self._ids.append(ids[i])
            self._slot[ids[i]] = slot
        self._graph.add(slots.astype(np.uint64), matrix)

    def set_hidden(self, ids: list[str], hidden: bool) -> None:
        slots = [self._slot[memory_id] for memory_id in ids if memory_id in self._slot]
        self._hidden[slots] = hidden

    def remove(self, ids: list[str]) -> None:
        """Forget memories (deleted from the table); their slots stay empty."""
        slots = [self._slot.pop(memory_id) for memory_id in ids if memory_id in self._slot]
        if slots:
            self._alive[slots] = False
            self._graph.remove(np.asarray(slots, dtype=np.uint64))

    # ---- search ------------------------------------------------------------------------------------------------

    def search(self, query: Vector, k: int, filters: Filters = Filters()) -> list[tuple[str, float]]:
        """The ``k`` memories passing ``filters`` nearest to ``query`` (cosine), best first: ``(id, score)``."""
        k = max(1, int(k))
        q = self._unit(query)
        mask = self._mask(filters)
        passing = int(np.count_nonzero(mask))
        if passing == 0:
            return []
        if passing <= EXACT_BELOW:
            return self._exact_over(np.flatnonzero(mask), q, k)
        alive = len(self._slot)
        fetch = min(alive, math.ceil(k * alive / passing * 2) + 16)
        while True:
            found = self._graph.search(q, fetch)
            keys = np.asarray(found.keys, dtype=np.int64)
            keep = keys[mask[keys]]
            if len(keep) >= k or fetch >= alive:
                return self._exact_over(keep, q, k)
            if fetch * 4 >= alive // 2:  # a graph search this wide costs more than reading the candidates
                return self._exact_over(np.flatnonzero(mask), q, k)
            fetch *= 4

    def exact(self, query: Vector, k: int, filters: Filters = Filters()) -> list[tuple[str, float]]:
        """The exact answer ``search`` approximates: every memory passing ``filters`` scored."""
        return self._exact_over(np.flatnonzero(self._mask(filters)), self._unit(query), max(1, int(k)))

    # ---- inside ------------------------------------------------------------------------------------------------

    def _mask(self, filters: Filters) -> np.ndarray[Any, np.dtype[np.bool_]]:
        n = len(self._ids)
        mask = self._alive[:n].copy()
        if not filters.include_hidden:
            mask &= ~self._hidden[:n]
        if filters.now is not None:
            mask &= self._expires[:n] > filters.now
        if filters.since is not None:
            mask &= self._created[:n] >= filters.since
        for column, name, value in (
            (self._agent, "agent", filters.agent),
            (self._type, "type", filters.memory_type),
            (self._workflow, "workflow", filters.workflow),
        ):
            if value is not None:
                code = self._codes[name].get(value)
                if code is None:
                    return np.zeros(n, dtype=bool)
                mask &= column[:n] == code
        return mask

    def _exact_over(self, slots: np.ndarray[Any, Any], q: Vector, k: int) -> list[tuple[str, float]]:
        if len(slots) == 0:
            return []
        scores = self._vectors[slots] @ q
        top = np.argpartition(-scores, k - 1)[:k] if len(slots) > k else np.arange(len(slots))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[int(slots[i])], float(scores[i])) for i in top]

    def _unit(self, query: Vector) -> Vector:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"a {q.shape[0]}-d query cannot search an index of {self.dimension}-d vectors")
        norm = float(np.linalg.norm(q))
        return q / norm if norm else q

    def _code(self, column: str, value: str | None) -> int:
        codes = self._codes[column]
        if value not in codes:
            codes[value] = len(codes)
        return codes[value]

    def _grow(self, needed: int) -> None:
        capacity = len(self._alive)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        self._vectors = _resized(self._vectors, capacity)
        for name in ("_agent", "_type", "_workflow", "_created", "_expires", "_hidden", "_alive"):
            setattr(self, name, _resized(getattr(self, name), capacity))


def _resized(array: np.ndarray[Any, Any], capacity: int) -> np.ndarray[Any, Any]:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
