"""Agent memory: remember a text with where it came from, search by meaning, follow rollbacks.

``MemoryService`` is the one way memories are written and searched (agents, the ``llm`` agent's tools, the
dashboard's explorer and ``agentdeck memory``). The ``agent_memory`` table is the source of truth: a memory is
stored there first, then added to the in-process index (``engine.memory.index``) that answers searches. The index
is built from the table page by page on first use, and follows every write, hide and expiry made through this
service; a process that only reads (``agentdeck memory search``) builds it when it searches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from db.models import MEMORY_TYPES, Checkpoint, Memory, MemoryHit, utcnow
from db.stores import Stores
from engine.embeddings import Embedder, EmbedderError, embedder_from_setting
from engine.errors import EngineError
from engine.memory.index import Filters, MemoryIndex
from engine.memory.lineage import current_bases, split_for_rollback

#: How long a short-term memory is found by search unless its writer says otherwise.
SHORT_TERM_TTL = timedelta(hours=24)
#: The longest memory stored; longer text is cut (the embedder reads only the first 256 word pieces anyway).
MAX_CONTENT_CHARS = 8_000
_LOAD_PAGE = 5_000


class MemoryInputError(EngineError):
    """A memory cannot be written or searched as asked (bad type, empty text); the message says why."""


class MemoryService:
    def __init__(self, stores: Stores, embedder: str | Embedder | None = None, dimension: int = 384) -> None:
        self._stores = stores
        self._setting = embedder
        self._embedder: Embedder | None = embedder if isinstance(embedder, Embedder) else None
        self._dimension = dimension
        self._index = MemoryIndex(dimension)
        self._loading: asyncio.Task[None] | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder (``AGENTDECK_EMBEDDER``), made on first use; ``EmbedderError`` when it cannot be."""
        if self._embedder is None:
            embedder = embedder_from_setting(self._setting if isinstance(self._setting, str) else None)
            if embedder.dimension != self._dimension:
                raise EmbedderError(
                    f"the embedder {embedder.name} makes {embedder.dimension}-d vectors, but this database holds "
                    f"{self._dimension}-d ones (AGENTDECK_EMBEDDING_DIMENSION): use a {self._dimension}-d embedder "
                    "or a new database"
                )
            self._embedder = embedder
        return self._embedder

    # ---- writing -----------------------------------------------------------------------------------------------

    async def remember(
        self,
        agent: str,
        content: str,
        memory_type: str = "long_term",
        metadata: Mapping[str, Any] | None = None,
        *,
        workflow: str | None = None,
        task: str | None = None,
        attempt: int | None = None,
        graph_step: int | None = None,
        checkpoint: str | None = None,
        expires_in: timedelta | None = None,
    ) -> Memory:
        """Store a memory with its provenance and make it searchable; returns it (with its vector)."""
        memory_type = check_type(memory_type)
        text = content.strip()
        if not text:
            raise MemoryInputError("a memory needs some text: the content is empty")
        if not agent.strip():
            raise MemoryInputError("a memory needs the name of the agent it belongs to")
        vector = await self.embedder.embed_one(text[:MAX_CONTENT_CHARS])
        now = utcnow()
        if expires_in is None and memory_type == "short_term":
            expires_in = SHORT_TERM_TTL
        memory = Memory(
            agent=agent,
            content=text[:MAX_CONTENT_CHARS],
            embedding=vector.astype(float).tolist(),
            memory_type=memory_type,
            workflow=workflow,
            task=task,
            attempt=attempt,
            graph_step=graph_step,
            checkpoint=checkpoint,
            expires_at=now + expires_in if expires_in is not None else None,
            embedder=self.embedder.name,
            metadata=dict(metadata or {}),
            created_at=now,
        )
        await self._stores.memories.add_many([memory])
        if self._loading is not None:  # an index not started yet picks the row up from the table
            await asyncio.shield(self._loading)
            self._add([memory], [vector])
        return memory

    # ---- searching ---------------------------------------------------------------------------------------------

    async def search(
        self,
        query: str | Sequence[float] | np.ndarray[Any, Any],
        k: int = 5,
        *,
        agent: str | None = None,
        memory_type: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        include_hidden: bool = False,
    ) -> list[MemoryHit]:
        """The ``k`` memories nearest in meaning to ``query`` (a text, or a vector), best first. Memories a
        rollback took back and expired short-term ones are left out (``include_hidden`` keeps the former)."""
        if memory_type is not None:
            check_type(memory_type)
        if isinstance(query, str):
            if not query.strip():
                return []
            vector = await self.embedder.embed_one(query)
        else:
            vector = np.asarray(query, dtype=np.float32)
        await self.ready()
        filters = Filters(
            agent=agent,
            memory_type=memory_type,
            workflow=workflow,
            since=since.timestamp() if since is not None else None,
            include_hidden=include_hidden,
            now=utcnow().timestamp(),
        )
        found = self._index.search(vector, k, filters)
        if not found:
            return []
        memories = {m.id: m for m in await self._stores.memories.get_many([memory_id for memory_id, _ in found])}
        return [MemoryHit(memory=memories[i], score=score) for i, score in found if i in memories]

    async def ready(self) -> None:
        """Wait until the index holds every stored memory (built on first use)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        await asyncio.shield(self._loading)

    async def get(self, memory_id: str) -> Memory | None:
        return await self._stores.memories.get(memory_id)

    async def recent(self, limit: int = 50, agent: str | None = None, workflow: str | None = None) -> list[Memory]:
        """The newest memories, hidden and expired ones included (they say so)."""
        return await self._stores.memories.list(agent=agent, limit=limit, workflow=workflow)

    # ---- history -----------------------------------------------------------------------------------------------

    async def follow_rollback(
        self, workflow: str, head: Checkpoint, history: Sequence[Checkpoint], rerun_from_scratch: set[str]
    ) -> tuple[int, int]:
        """After a rollback to ``head.rolled_back_to``: hide the workflow's memories that left its history and show
        those that came back (a roll forward). Returns (hidden, shown)."""
        memories = await self._stores.memories.of_workflow(workflow)
        hide, show = split_for_rollback(memories, current_bases(history, head), rerun_from_scratch)
        await self._mark(hide, head.id)
        await self._mark(show, None)
        return len(hide), len(show)

    async def follow_fork(self, workflow: str, task: str, step: int, by: str) -> int:
        """A graph task forked at graph step ``step``: hide what it remembered in later steps; returns how many."""
        memories = await self._stores.memories.of_workflow(workflow)
        hide = [
            m.id
            for m in memories
            if m.task == task and m.graph_step is not None and m.graph_step > step and m.hidden_by is None
        ]
        await self._mark(hide, by)
        return len(hide)

    async def forget_expired(self) -> int:
        """Delete short-term memories whose time is up; returns how many."""
        gone = await self._stores.memories.delete_expired(utcnow())
        if self._loading is not None and self._loading.done():
            self._index.remove(gone)
        return len(gone)

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loading

    # ---- inside ------------------------------------------------------------------------------------------------

    async def _mark(self, ids: list[str], hidden_by: str | None) -> None:
        for start in range(0, len(ids), 1_000):
            await self._stores.memories.set_hidden(ids[start : start + 1_000], hidden_by)
        if self._loading is not None:  # an index not started yet reads the marks from the table
            await asyncio.shield(self._loading)
            self._index.set_hidden(ids, hidden_by is not None)

    async def _load(self) -> None:
        with contextlib.suppress(Exception):  # a read-only database still searches; expiry waits for a writer
            await self.forget_expired()
        after: str | None = None
        while True:
            page = await self._stores.memories.page(after, _LOAD_PAGE)
            usable = [(m, v) for m, v in zip(page.memories, page.vectors, strict=True) if len(v) == self._dimension]
            if usable:  # in a thread: 5,000 vectors take the graph 0.5-1.6 s, which the loop must not wait out
                await asyncio.to_thread(self._add, [m for m, _ in usable], [v for _, v in usable])
            if len(page.memories) < _LOAD_PAGE:
                return
            after = page.memories[-1].id
            await asyncio.sleep(0)  # let the loop breathe between pages

    def _add(self, memories: list[Memory], vectors: list[np.ndarray[Any, Any]]) -> None:
        self._index.add_many(
            [m.id for m in memories],
            vectors,
            agents=[m.agent for m in memories],
            types=[m.memory_type for m in memories],
            workflows=[m.workflow for m in memories],
            created=[m.created_at.timestamp() for m in memories],
            expires=[m.expires_at.timestamp() if m.expires_at is not None else None for m in memories],
            hidden=[m.hidden_by is not None for m in memories],
        )


def check_type(memory_type: str) -> str:
    if memory_type not in MEMORY_TYPES:
        raise MemoryInputError(f"unknown memory type {memory_type!r}: use one of {', '.join(MEMORY_TYPES)}")
    return memory_type
