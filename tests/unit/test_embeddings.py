"""engine/embeddings on the real MiniLM model: ranking, vector shape and norm, the cache, batching, settings."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engine.embeddings import DEFAULT_EMBEDDER, Embedder, EmbedderError, embedder_from_setting
from engine.embeddings._base import Vectors
from engine.embeddings._cache import CachedEmbedder
from engine.embeddings._minilm import MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[2]

PARAPHRASE = ("The build failed because the disk was full", "compilation stopped: no space left on device")
UNRELATED = [
    "My grandmother grows tomatoes and basil on her balcony.",
    "The orchestra played Beethoven's ninth symphony last night.",
    "She adopted a grey kitten from the animal shelter.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Our hiking trail wound through pine forests to a glacier lake.",
    "The football match ended in a draw after extra time.",
    "He is learning to paint watercolour landscapes on weekends.",
    "The museum reopened its ancient Egypt exhibition in spring.",
]


class CountingMiniLM(MiniLMEmbedder):
    """The real model, counting the calls and texts that reach it and the threads they run on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        return super().embed_sync(texts)


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    """One loaded model for the module: the tests that count calls wrap their own."""
    loaded = MiniLMEmbedder()
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return embedder_from_setting(None)


async def test_a_paraphrase_ranks_its_source_first(embedder: Embedder) -> None:
    source, paraphrase = PARAPHRASE
    candidates = [*UNRELATED[:4], source, *UNRELATED[4:]]
    vectors = await embedder.embed(candidates)
    query = await embedder.embed_one(paraphrase)
    scores = vectors @ query
    assert candidates[int(np.argmax(scores))] == source
    best_unrelated = max(float(s) for c, s in zip(candidates, scores, strict=True) if c != source)
    assert float(scores[candidates.index(source)]) > best_unrelated + 0.1


def test_vectors_are_384_d_unit_norm_float32_and_deterministic(model: MiniLMEmbedder) -> None:
    texts = [PARAPHRASE[0], "short", "ünïcödé and emoji 🚀 work too"]
    first = model.embed_sync(texts)
    assert first.shape == (3, 384)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.embed_sync(texts), first)
    np.testing.assert_array_equal(MiniLMEmbedder().embed_sync(texts), first)  # a fresh session agrees


def test_a_batch_gives_the_rows_of_one_by_one_calls(model: MiniLMEmbedder) -> None:
    texts = [PARAPHRASE[0], "", "a", " ".join(UNRELATED)]  # very different lengths: padding must not matter
    batch = model.embed_sync(texts)
    one_by_one = np.stack([model.embed_sync([text])[0] for text in texts])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)


def test_an_empty_text_gets_a_finite_unit_vector(model: MiniLMEmbedder) -> None:
    (vector,) = model.embed_sync([""])
    assert np.isfinite(vector).all()
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_text_beyond_256_tokens_is_cut(model: MiniLMEmbedder) -> None:
    long = "the deploy log says " * 100  # about 400 word pieces
    with_tail, without = model.embed_sync([long + "and then everything caught fire", long])
    np.testing.assert_array_equal(with_tail, without)


async def test_embed_one_and_no_texts(embedder: Embedder) -> None:
    assert (await embedder.embed_one("hello")).shape == (384,)
    assert (await embedder.embed([])).shape == (0, 384)
    assert embedder.embed_sync([]).shape == (0, 384)


async def test_a_text_embedded_twice_runs_the_model_once() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner)
    first = await cached.embed_one("the same text")
    second = await cached.embed_one("the same text")
    np.testing.assert_array_equal(first, second)
    assert inner.calls == [["the same text"]]
    assert (cached.stats.hits, cached.stats.misses, cached.stats.model_calls) == (1, 1, 1)


async def test_one_call_embeds_its_distinct_misses_in_one_model_call() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner)
    await cached.embed(["a", "b"])
    vectors = await cached.embed(["b", "c", "c", "d", "a"])
    assert sorted(map(sorted, inner.calls)) == [["a", "b"], ["c", "d"]]
    np.testing.assert_array_equal(vectors[1], vectors[2])
    np.testing.assert_allclose(vectors, inner.embed_sync(["b", "c", "c", "d", "a"]), atol=1e-5)


def test_misses_go_to_the_model_in_chunks_of_batch_size() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner, batch_size=4)
    texts = [f"note {i}" for i in range(10)]
    vectors = cached.embed_sync(texts)
    assert [len(call) for call in inner.calls] == [4, 4, 2]
    np.testing.assert_allclose(vectors, inner.embed_sync(texts), atol=1e-5)


async def test_concurrent_calls_are_combined_and_run_off_the_event_loop() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner)
    texts = [f"memory {i % 25}" for i in range(100)]  # 25 distinct texts, each asked for 4 times at once
    vectors = await asyncio.gather(*(cached.embed_one(text) for text in texts))
    assert sum(len(call) for call in inner.calls) == 25  # each distinct text reached the model once
    assert len(inner.calls) <= 3  # the burst became a few batched calls, not 25 (or 100)
    assert threading.current_thread().name not in inner.threads
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, await cached.embed_one(text))


def test_threads_calling_at_once_get_their_own_vectors() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner)
    results: dict[int, Vectors] = {}

    def work(i: int) -> None:
        results[i] = cached.embed_sync([f"thread {i}", "shared text"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(call) for call in inner.calls) == 9
    expected = inner.embed_sync([f"thread {i}" for i in range(8)])
    for i in range(8):
        np.testing.assert_allclose(results[i][0], expected[i], atol=1e-5)
        np.testing.assert_array_equal(results[i][1], results[0][1])


def test_the_cache_forgets_the_least_recently_used_text() -> None:
    inner = CountingMiniLM()
    cached = CachedEmbedder(inner, cache_size=2)
    cached.embed_sync(["a"])
    cached.embed_sync(["b"])
    cached.embed_sync(["a"])  # a is now the most recent
    cached.embed_sync(["c"])  # evicts b
    assert (cached.cached("a"), cached.cached("b"), cached.cached("c")) == (True, False, True)
    cached.embed_sync(["b"])
    assert inner.calls == [["a"], ["b"], ["c"], ["b"]]


def test_returned_vectors_do_not_alias_the_cache() -> None:
    cached = CachedEmbedder(CountingMiniLM())
    first = cached.embed_sync(["mutable?"])
    first[0, :] = 0.0
    assert float(np.linalg.norm(cached.embed_sync(["mutable?"])[0])) == pytest.approx(1.0, abs=1e-5)


class FailingOnce(CountingMiniLM):
    """The real model, but the first call fails as a broken session would, once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(timeout=30)
            raise RuntimeError("onnxruntime: session broke")
        return super().embed_sync(texts)


async def test_a_model_failure_reaches_every_waiter_and_is_not_cached() -> None:
    inner = FailingOnce()
    cached = CachedEmbedder(inner)
    first = asyncio.create_task(cached.embed_one("x"))
    await asyncio.to_thread(inner.entered.wait, 30)
    second = asyncio.create_task(cached.embed_one("x"))  # joins the text while its model call is running
    await asyncio.sleep(0)
    inner.release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert (await cached.embed_one("x")).shape == (384,)  # the failure was not cached: the next call tries again
    assert inner.calls == [["x"]]


def test_the_default_setting_is_minilm() -> None:
    assert DEFAULT_EMBEDDER == "minilm"
    for setting in (None, "", "  ", "minilm", " MiniLM "):
        made = embedder_from_setting(setting)
        assert (made.name, made.dimension) == ("minilm", 384)


@pytest.mark.parametrize("setting", ["bogus", "minilm:large", "openai", "openai:", "sentence-transformers:", "e5"])
def test_a_bad_setting_says_what_is_wrong_and_lists_the_choices(setting: str) -> None:
    with pytest.raises(EmbedderError) as raised:
        embedder_from_setting(setting)
    message = str(raised.value)
    assert f"AGENTDECK_EMBEDDER={setting.strip()!r}" in message
    assert "minilm" in message and "openai:MODEL" in message and "sentence-transformers:NAME" in message


@pytest.mark.skipif(importlib.util.find_spec("langchain_openai") is not None, reason="langchain-openai is installed")
def test_openai_without_its_extra_names_the_extra() -> None:
    with pytest.raises(EmbedderError, match=r"install the openai extra: uv sync --extra openai"):
        embedder_from_setting("openai:text-embedding-3-small")


@pytest.mark.skipif(importlib.util.find_spec("langchain_openai") is None, reason="needs the openai extra")
def test_openai_builds_without_the_network() -> None:
    made = embedder_from_setting("openai:text-embedding-3-small")
    assert (made.name, made.dimension) == ("openai:text-embedding-3-small", 1536)


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None, reason="sentence-transformers is installed"
)
def test_sentence_transformers_without_its_extra_names_the_extra() -> None:
    with pytest.raises(EmbedderError, match=r"uv sync --extra sentence-transformers"):
        embedder_from_setting("sentence-transformers:all-mpnet-base-v2")


def test_embedding_pulls_in_neither_torch_nor_the_ui() -> None:
    code = (
        "import sys\n"
        "from engine.embeddings import embedder_from_setting\n"
        "assert embedder_from_setting(None).embed_sync(['x']).shape == (1, 384)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'textual', 'tui'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
