"""The default embedder (engine/embeddings, MiniLM int8 on onnxruntime): cold load and sentences per second.

- ``embed_cold_load``: seconds from a fresh interpreter's ``import onnxruntime, tokenizers`` to a loaded tokenizer
  and ONNX session (``load_s``), and to the first vector (``first_vector_s``), each the median of ``runs`` fresh
  processes.
- ``embed_throughput``: sentences per second, median over the repeats, in chunks of 64: agent-memory-like notes
  (8-30 words, ``mean_tokens`` word pieces) through the bare model with onnxruntime on 1 and on 2 intra-op
  threads (the embedder's default is half the cores, at most 2), per wall second and per CPU second of the
  process; ~9-token sentences (``short_per_s``); the notes through the cache layer when none is cached
  (``cached_cold_per_s``: it sorts each call's texts by length, so a chunk pads less) and when all are
  (``cached_hit_per_s``).

Run alone with ``uv run python -m bench.embed_bench`` (``--quick`` for fewer sentences).
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_COLD = """
import json, time
started = time.perf_counter()
from engine.embeddings._minilm import MiniLMEmbedder
embedder = MiniLMEmbedder()
embedder.load()
loaded = time.perf_counter()
embedder.embed_sync(["the first vector"])
print(json.dumps({"load_s": loaded - started, "first_vector_s": time.perf_counter() - started}))
"""

_VOCABULARY = (
    "agent task workflow build failed disk full retry cache database index query vector memory tool call result "
    "error timeout network request user asked summary report deploy server log line file path config test passed "
    "checkpoint rollback resume paused cancelled worker thread model token budget price latency output plan step"
)
_WORDS = _VOCABULARY.split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct note-like sentences of 8-30 words, the same for a given seed."""
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choices(_WORDS, k=rng.randint(8, 30))) + "." for i in range(n)]


def cold_load(runs: int) -> dict[str, Any]:
    """Medians over ``runs`` fresh interpreters."""
    figures = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _COLD], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
        )
        figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "load_s": round(statistics.median(f["load_s"] for f in figures), 3),
        "first_vector_s": round(statistics.median(f["first_vector_s"] for f in figures), 3),
        "runs": runs,
    }


def _rate(embed: Callable[[list[str]], object], texts: list[str], repeats: int) -> int:
    """Median sentences per second of ``embed`` over ``texts`` in chunks of 64."""
    return _rates(embed, texts, repeats)[0]


def _rates(embed: Callable[[list[str]], object], texts: list[str], repeats: int) -> tuple[int, int]:
    """Median sentences per wall second and per CPU second of this process (the latter moves less when other
    processes share the cores, as long as the model runs on one thread)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), 64):
            embed(texts[start : start + 64])
        walls.append(len(texts) / (time.perf_counter() - wall))
        cpus.append(len(texts) / max(time.process_time() - cpu, 1e-9))
    return round(statistics.median(walls)), round(statistics.median(cpus))


def throughput(n: int, repeats: int) -> dict[str, Any]:
    from engine.embeddings._cache import CachedEmbedder
    from engine.embeddings._minilm import MiniLMEmbedder

    texts = sentences(n)
    short = [f"note {i}: the build failed" for i in range(n)]
    model = MiniLMEmbedder()
    model.load()
    assert model._tokenizer is not None
    model._tokenizer.no_padding()
    tokens = statistics.fmean(len(e.ids) for e in model._tokenizer.encode_batch(texts))
    model = MiniLMEmbedder()
    model.embed_sync(texts[:64])  # warm-up: loading and first-call allocations
    figures: dict[str, Any] = {
        "sentences": n,
        "mean_tokens": round(tokens, 1),
        "repeats": repeats,
        "default_threads": model._threads,  # what short_per_s and the cached figures run on
    }
    for threads in (1, 2):
        threaded = MiniLMEmbedder(threads=threads)
        threaded.embed_sync(texts[:64])
        wall, cpu = _rates(threaded.embed_sync, texts, repeats)
        figures[f"model_per_s_{threads}_threads"] = wall
        figures[f"model_per_cpu_s_{threads}_threads"] = cpu
    figures["short_per_s"] = _rate(model.embed_sync, short, repeats)  # ~9 tokens each
    # What embedder_from_setting gives: a fresh cache each time, so every text reaches the model, sorted by length.
    figures["cached_cold_per_s"] = _rate(lambda chunk: CachedEmbedder(model).embed_sync(chunk), texts, repeats)
    cached = CachedEmbedder(model, cache_size=n)
    cached.embed_sync(texts)
    figures["cached_hit_per_s"] = _rate(cached.embed_sync, texts, repeats)
    return figures


async def run(quick: bool) -> dict[str, Any]:
    return {
        "embed_cold_load": cold_load(runs=3),
        "embed_throughput": throughput(n=256 if quick else 1024, repeats=3),
    }


if __name__ == "__main__":
    import asyncio

    print(json.dumps(asyncio.run(run(quick="--quick" in sys.argv)), indent=2))
