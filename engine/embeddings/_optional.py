"""Embedders behind optional extras: OpenAI's API (``openai`` extra) and any sentence-transformers model
(``sentence-transformers`` extra, which brings torch).

Their packages are imported on first use only, so ``engine`` imports without them; `require` says which extra to
install when one is missing. Neither is offline: OpenAI is a web API, and sentence-transformers downloads a model
it has not cached yet.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.embeddings._base import Embedder, EmbedderError, Vectors, normalise_rows

# The dimensions of OpenAI's embedding models, so ``dimension`` needs no API call for them.
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def require(module: str, package: str, extra: str, setting: str) -> None:
    """Raise `EmbedderError` naming the extra to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise EmbedderError(
            f"AGENTDECK_EMBEDDER={setting!r} needs the {package} package: install the {extra} extra: "
            f"uv sync --extra {extra} (or pip install 'agentdeck[{extra}]')"
        )


class OpenAIEmbedder(Embedder):
    """``langchain_openai.OpenAIEmbeddings(model=...)``; reads ``OPENAI_API_KEY`` when first used, not before."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self._client: Any = None
        self._dimension: int | None = OPENAI_DIMENSIONS.get(model)
        self._lock = threading.Lock()

    def _embeddings(self) -> Any:
        with self._lock:
            if self._client is None:
                from langchain_openai import OpenAIEmbeddings

                try:
                    self._client = OpenAIEmbeddings(model=self.model)
                except Exception as exc:  # e.g. no OPENAI_API_KEY: the user's to fix, so one clear line
                    raise EmbedderError(f"cannot make the {self.name} embedder: {exc}") from exc
            return self._client

    @property
    def dimension(self) -> int:
        """Known for OpenAI's own models; for another model name, one API call on first use tells."""
        if self._dimension is None:
            self._dimension = int(self.embed_sync([""]).shape[1])
        return self._dimension

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = normalise_rows(self._embeddings().embed_documents(list(texts)))
        self._dimension = vectors.shape[1]
        return vectors

    async def embed(self, texts: Sequence[str]) -> Vectors:
        # The client has its own async HTTP path: no thread needed.
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = normalise_rows(await self._embeddings().aembed_documents(list(texts)))
        self._dimension = vectors.shape[1]
        return vectors


class SentenceTransformersEmbedder(Embedder):
    """``sentence_transformers.SentenceTransformer(name)`` on the CPU, loaded on first use (once, thread-safe)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"sentence-transformers:{model}"
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        """The model; call with ``self._lock`` held."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.model, device="cpu")
            except Exception as exc:  # unknown name, offline with nothing cached, ...
                raise EmbedderError(f"cannot load the {self.name} embedder: {exc}") from exc
        return self._model

    @property
    def dimension(self) -> int:
        with self._lock:
            model = self._loaded()
        # The method has had both names across sentence-transformers releases; take whichever this one has.
        for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            if hasattr(model, method) and (size := getattr(model, method)()) is not None:
                return int(size)
        return int(self.embed_sync([""]).shape[1])

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            encoded = self._loaded().encode(
                list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
        return normalise_rows(encoded)
