"""Deterministic test data for the conformance suite: fixed instants and seeded embedding vectors."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from db.settings import DbSettings

#: The dimension the migrations build the vector index for; vectors of any other size would be rejected.
EMBEDDING_DIMENSION = DbSettings().embedding_dimension

#: A fixed instant with microseconds, so a store that truncates or shifts timestamps fails the round trips.
BASE_TIME = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)

#: A non-UTC zone: a value written in it must come back as the same instant.
PLUS_TWO = timezone(timedelta(hours=2))


def at(minutes: float) -> datetime:
    """``BASE_TIME`` shifted by some minutes (negative for earlier)."""
    return BASE_TIME + timedelta(minutes=minutes)


def random_vector(seed: int) -> list[float]:
    """A unit vector pointing in a random direction, the same one for the same seed."""
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIMENSION)]
    return _normalised(raw)


def nudged(vector: Sequence[float], seed: int, amount: float) -> list[float]:
    """``vector`` moved a little (``amount`` relative to its length) in a random direction."""
    noise = random_vector(seed)
    return _normalised([v + amount * n for v, n in zip(vector, noise, strict=True)])


def opposite(vector: Sequence[float]) -> list[float]:
    return [-v for v in vector]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _normalised(vector: list[float]) -> list[float]:
    length = math.sqrt(sum(v * v for v in vector))
    return [v / length for v in vector]
