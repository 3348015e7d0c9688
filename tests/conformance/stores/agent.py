"""Conformance checks for the agent-side stores: memories (vector search) and metrics."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest

from db.models import Memory, Metric
from db.stores import Stores
from tests.conformance.stores._data import PLUS_TWO, at, cosine, nudged, opposite, random_vector

# Scores are cosine similarities; the index may store vectors as f32, so compare with f32-sized slack.
SCORE_TOLERANCE = 1e-5


def _memory(index: int, agent: str, embedding: list[float], workflow: str | None = None) -> Memory:
    return Memory(
        id=f"mem-{agent}-{index}",
        agent=agent,
        content=f"{agent} remembers fact {index}",
        embedding=embedding,
        workflow=workflow,
        created_at=at(index),
    )


def _nearest(query: list[float], memories: list[Memory], k: int) -> list[Memory]:
    """The exact answer a search should give: brute-force cosine over every candidate."""
    return sorted(memories, key=lambda m: cosine(query, m.embedding), reverse=True)[:k]


class MemoryStoreConformance:
    async def test_add_and_get_round_trip_every_field(self, stores: Stores) -> None:
        memory = Memory(
            id="mem-1",
            agent="writer",
            content="the client prefers short summaries",
            embedding=random_vector(1),
            memory_type="episodic",
            workflow="wf-1",
            relevance=0.42,
            metadata={"source": {"task": "summarise", "turn": 3}, "tags": ["style", "client"]},
            created_at=at(5).astimezone(PLUS_TWO),
        )

        await stores.memories.add_many([memory])
        fetched = await stores.memories.get("mem-1")

        assert fetched is not None
        assert fetched.model_dump(exclude={"embedding"}) == memory.model_dump(exclude={"embedding"})
        assert fetched.embedding == pytest.approx(memory.embedding, rel=1e-6, abs=1e-7)  # stored as float32

    async def test_get_missing_returns_none(self, stores: Stores) -> None:
        assert await stores.memories.get("mem-nowhere") is None

    async def test_search_returns_the_nearest_by_cosine_first(self, stores: Stores) -> None:
        query = random_vector(100)
        # Graded neighbours (larger nudge = further away) among unrelated distractors.
        graded = [_memory(i, "scout", nudged(query, seed=200 + i, amount=0.15 * (i + 1))) for i in range(20)]
        distractors = [_memory(100 + i, "scout", random_vector(300 + i)) for i in range(60)]
        exact = _memory(999, "scout", list(query))
        everything = [*graded, *distractors, exact]
        random.Random(5).shuffle(everything)
        await stores.memories.add_many(everything)

        hits = await stores.memories.search(query, k=6)

        expected = _nearest(query, everything, 6)
        assert [h.memory.id for h in hits] == [m.id for m in expected]
        assert hits[0].memory.id == exact.id
        assert hits[0].score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
        assert [h.score for h in hits] == pytest.approx(
            [cosine(query, m.embedding) for m in expected], abs=SCORE_TOLERANCE
        )
        assert hits[0].memory.content == exact.content

    async def test_search_returns_fewer_than_k_when_there_are_fewer(self, stores: Stores) -> None:
        memories = [_memory(i, "scout", random_vector(400 + i)) for i in range(3)]
        await stores.memories.add_many(memories)

        hits = await stores.memories.search(random_vector(400), k=10)

        assert sorted(h.memory.id for h in hits) == sorted(m.id for m in memories)
        assert hits[0].memory.id == memories[0].id

    async def test_search_of_an_empty_store_finds_nothing(self, stores: Stores) -> None:
        assert await stores.memories.search(random_vector(1), k=5) == []

    async def test_agent_filter_still_finds_k_when_other_agents_crowd_the_query(self, stores: Stores) -> None:
        query = random_vector(500)
        crowd = [_memory(i, "a", nudged(query, seed=1000 + i, amount=0.3)) for i in range(300)]
        far = opposite(query)
        loners = [_memory(i, "b", nudged(far, seed=2000 + i, amount=0.5 + 0.1 * i)) for i in range(10)]
        await stores.memories.add_many([*crowd, *loners])

        hits = await stores.memories.search(query, k=5, agent="b")

        assert [h.memory.agent for h in hits] == ["b"] * 5
        expected = _nearest(query, loners, 5)
        assert [h.memory.id for h in hits] == [m.id for m in expected]
        assert [h.score for h in hits] == pytest.approx(
            [cosine(query, m.embedding) for m in expected], abs=SCORE_TOLERANCE
        )

    async def test_agent_filter_returns_only_that_agents_memories(self, stores: Stores) -> None:
        query = random_vector(600)
        mine = [_memory(i, "a", nudged(query, seed=3000 + i, amount=0.4 + 0.2 * i)) for i in range(8)]
        theirs = [_memory(i, "b", nudged(query, seed=4000 + i, amount=0.1)) for i in range(8)]
        few = [_memory(i, "c", random_vector(5000 + i)) for i in range(2)]
        await stores.memories.add_many([*mine, *theirs, *few])

        hits_a = await stores.memories.search(query, k=4, agent="a")
        hits_c = await stores.memories.search(query, k=4, agent="c")
        hits_none = await stores.memories.search(query, k=4, agent="nobody")

        assert [h.memory.id for h in hits_a] == [m.id for m in _nearest(query, mine, 4)]
        assert sorted(h.memory.id for h in hits_c) == sorted(m.id for m in few)
        assert hits_none == []

    async def test_list_is_newest_first_with_agent_filter_and_limit(self, stores: Stores) -> None:
        memories = [_memory(i, "a" if i % 2 else "b", random_vector(700 + i)) for i in range(10)]
        shuffled = list(memories)
        random.Random(6).shuffle(shuffled)
        await stores.memories.add_many(shuffled)

        everything = await stores.memories.list()
        of_a = await stores.memories.list(agent="a")
        newest_three = await stores.memories.list(limit=3)

        assert [m.id for m in everything] == [m.id for m in reversed(memories)]
        assert [m.id for m in of_a] == ["mem-a-9", "mem-a-7", "mem-a-5", "mem-a-3", "mem-a-1"]
        assert [m.id for m in newest_three] == [m.id for m in reversed(memories)][:3]

    async def test_provenance_and_expiry_round_trip(self, stores: Stores) -> None:
        memory = Memory(
            id="mem-p",
            agent="writer",
            content="the deploy needs the staging key",
            embedding=random_vector(9),
            memory_type="short_term",
            workflow="wf-1",
            task="deploy",
            attempt=2,
            graph_step=4,
            checkpoint="cp-3",
            expires_at=at(30),
            embedder="minilm",
            created_at=at(6),
        )
        await stores.memories.add_many([memory])

        fetched = await stores.memories.get("mem-p")

        assert fetched is not None
        assert fetched.model_dump(exclude={"embedding"}) == memory.model_dump(exclude={"embedding"})

    async def test_pages_cover_every_memory_once_in_id_order_with_vectors(self, stores: Stores) -> None:
        memories = [_memory(i, "a", random_vector(900 + i)) for i in range(23)]
        await stores.memories.add_many(memories)

        seen: list[Memory] = []
        vectors: list[list[float]] = []
        after = None
        while page := await stores.memories.page(after, 5):
            assert len(page.memories) == len(page.vectors) <= 5
            seen.extend(page.memories)
            vectors.extend(v.tolist() for v in page.vectors)
            after = page.memories[-1].id
            if len(page.memories) < 5:
                break

        assert [m.id for m in seen] == sorted(m.id for m in memories)
        by_id = {m.id: m for m in memories}
        for memory, vector in zip(seen, vectors, strict=True):
            assert vector == pytest.approx(by_id[memory.id].embedding, rel=1e-6, abs=1e-7)
            assert memory.embedding == []  # the vectors travel apart

    async def test_hiding_and_showing_memories_keeps_them_and_marks_them(self, stores: Stores) -> None:
        rolled_back = [_memory(i, "w1", random_vector(810 + i), workflow="wf-1") for i in range(4)]
        neighbour = [_memory(i, "w2", random_vector(820 + i), workflow="wf-2") for i in range(2)]
        await stores.memories.add_many([*rolled_back, *neighbour])

        await stores.memories.set_hidden([m.id for m in rolled_back[2:]], "cp-7")
        of_wf1 = await stores.memories.of_workflow("wf-1")

        assert [m.id for m in of_wf1] == [m.id for m in rolled_back]  # oldest first, hidden ones kept
        assert [m.hidden_by for m in of_wf1] == [None, None, "cp-7", "cp-7"]
        assert all(m.embedding == [] for m in of_wf1)

        await stores.memories.set_hidden([rolled_back[3].id], None)
        assert [m.hidden_by for m in await stores.memories.of_workflow("wf-1")] == [None, None, "cp-7", None]
        assert {m.hidden_by for m in await stores.memories.of_workflow("wf-2")} == {None}

    async def test_delete_expired_removes_only_expired_memories(self, stores: Stores) -> None:
        expired = Memory(id="mem-old", agent="a", content="x", embedding=random_vector(1), expires_at=at(1))
        fresh = Memory(id="mem-new", agent="a", content="y", embedding=random_vector(2), expires_at=at(9))
        forever = Memory(id="mem-ever", agent="a", content="z", embedding=random_vector(3))
        await stores.memories.add_many([expired, fresh, forever])

        removed = await stores.memories.delete_expired(at(5))

        assert removed == ["mem-old"]
        assert {m.id for m in await stores.memories.list()} == {"mem-new", "mem-ever"}

    async def test_get_many_returns_those_that_exist(self, stores: Stores) -> None:
        memories = [_memory(i, "a", random_vector(950 + i)) for i in range(3)]
        await stores.memories.add_many(memories)

        found = await stores.memories.get_many([memories[0].id, "mem-nowhere", memories[2].id])

        assert sorted(m.id for m in found) == sorted([memories[0].id, memories[2].id])


class MetricStoreConformance:
    async def test_record_and_query_round_trip_every_field(self, stores: Stores) -> None:
        full = Metric(
            ts=at(1).astimezone(PLUS_TWO),
            name="tokens",
            value=1234.5,
            agent="writer",
            workflow="wf-1",
            labels={"model": "small", "cost": {"usd": 0.002}},
        )
        bare = Metric(ts=at(2), name="tokens", value=-1.0)

        await stores.metrics.record_many([bare, full])

        queried = await stores.metrics.query("tokens")
        assert [m.model_dump() for m in queried] == [full.model_dump(), bare.model_dump()]

    async def test_a_large_batch_is_queried_oldest_first(self, stores: Stores) -> None:
        samples = [Metric(ts=at(i), name="latency_ms", value=float(i), agent="scout") for i in range(500)]
        shuffled = list(samples)
        random.Random(7).shuffle(shuffled)

        await stores.metrics.record_many(shuffled)

        queried = await stores.metrics.query("latency_ms")
        assert [m.value for m in queried] == [float(i) for i in range(500)]
        assert queried == sorted(queried, key=lambda m: m.ts)

    async def test_query_filters_by_name_since_agent_workflow_and_limit(self, stores: Stores) -> None:
        samples = [
            Metric(
                ts=at(i),
                name="tokens" if i % 5 == 0 else "cost",
                value=float(i),
                agent="a" if i % 2 else "b",
                workflow="wf-1" if (i // 2) % 2 == 0 else "wf-2",
            )
            for i in range(40)
        ]
        random.Random(8).shuffle(samples)
        await stores.metrics.record_many(samples)

        def cost_values(
            since: datetime | None = None, agent: str | None = None, workflow: str | None = None
        ) -> list[float]:
            """What the query should return, worked out from the samples directly."""
            matching = [
                m
                for m in samples
                if m.name == "cost"
                and (since is None or m.ts >= since)
                and (agent is None or m.agent == agent)
                and (workflow is None or m.workflow == workflow)
            ]
            return [m.value for m in sorted(matching, key=lambda m: m.ts)]

        async def queried(**filters: Any) -> list[float]:
            return [m.value for m in await stores.metrics.query("cost", **filters)]

        assert await queried() == cost_values()
        assert await queried(since=at(21)) == cost_values(since=at(21))
        assert (await queried(since=at(21)))[0] == 21.0  # ``since`` is inclusive
        assert await queried(agent="a") == cost_values(agent="a")
        assert await queried(workflow="wf-2") == cost_values(workflow="wf-2")
        assert await queried(since=at(10), agent="b", workflow="wf-1") == cost_values(at(10), "b", "wf-1")
        assert await queried(limit=4) == cost_values()[:4]
        assert [m.value for m in await stores.metrics.query("tokens")] == [float(i) for i in range(0, 40, 5)]
        assert await stores.metrics.query("unknown") == []
