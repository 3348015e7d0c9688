"""Text embeddings for agent memory: texts in, 384-d float32 unit vectors out, offline, on the CPU, without torch.

Use it like this::

    embedder = embedder_from_setting(settings_value)  # None → DEFAULT_EMBEDDER ("minilm")
    vectors = await embedder.embed(["first text", "second text"])  # shape (2, embedder.dimension)
    similarity = float(vectors[0] @ vectors[1])  # cosine: rows have unit norm

The default runs all-MiniLM-L6-v2 (int8 ONNX) with onnxruntime; its weights are installed with agentdeck, so
nothing is downloaded at run time. Texts longer than 256 word pieces are truncated (only their start is embedded).
Every embedder from `embedder_from_setting` caches vectors by text and batches concurrent calls. Vectors of
different embedders (``Embedder.name``) are not comparable.
"""

from __future__ import annotations

from engine.embeddings._base import Embedder, EmbedderError
from engine.embeddings._setting import DEFAULT_EMBEDDER, embedder_from_setting

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "EmbedderError", "embedder_from_setting"]
