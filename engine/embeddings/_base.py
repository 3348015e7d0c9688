"""The embedder interface every backend implements, its error, and the row normalisation they share.

An embedder turns texts into float32 vectors of a fixed ``dimension`` whose rows have unit L2 norm, so the cosine
similarity of two texts is the dot product of their vectors. ``embed_sync`` is the one method a backend must
write; ``embed`` runs it in a worker thread so the event loop never waits on a model.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from engine.errors import EngineError

Vectors = npt.NDArray[np.float32]

# A row whose norm is below this is left as it is (all zeros stays all zeros) instead of being divided into NaN.
_TINY_NORM = 1e-12


class EmbedderError(EngineError):
    """An embedder cannot be made or cannot run: a bad ``AGENTDECK_EMBEDDER`` value, a missing optional extra."""


class Embedder(ABC):
    """Texts in, one unit-norm float32 row of ``dimension`` values per text out.

    Attributes:
        name: What made the vectors, e.g. ``minilm`` or ``openai:text-embedding-3-small``. Vectors from two
            embedders of different names are not comparable; stores keep the name next to the vectors.
        dimension: The length of every vector.
    """

    name: str

    @property
    @abstractmethod
    def dimension(self) -> int:
        """The length of every vector (a backend may override this with a plain class attribute)."""

    @abstractmethod
    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts``, blocking the calling thread.

        Returns:
            An array of shape ``(len(texts), dimension)``, float32, each row of unit L2 norm.
        """

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts`` in a worker thread (same result as `embed_sync`); the event loop keeps running."""
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """The vector of one text: shape ``(dimension,)``."""
        vectors = await self.embed([text])
        return cast(Vectors, vectors[0])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def normalise_rows(vectors: npt.ArrayLike) -> Vectors:
    """``vectors`` as a 2-D float32 array whose rows have unit L2 norm (rows of all zeros stay zeros, never NaN)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise EmbedderError(f"an embedding model returned an array of shape {array.shape}, expected (texts, dim)")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return cast(Vectors, np.divide(array, norms, out=array.copy(), where=norms > _TINY_NORM))
