"""The memory bench's harness (never its speed): the quick run measures every search it claims to, and its
figures are sane: recalls are fractions, percentiles are ordered and positive, exact search agrees with numpy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import memory_bench


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return asyncio.run(memory_bench.run(quick=True))


def _latencies(figures: dict[str, Any]) -> list[str]:
    return [key.removesuffix("_p50_ms") for key in figures if key.endswith("_p50_ms")]


def test_the_quick_run_reports_every_section_but_surrealdbs_hnsw(results: dict[str, dict[str, Any]]) -> None:
    assert list(results) == [
        "memory_index",
        "memory_peers",
        "memory_embed",
        "memory_service_mem",
        "memory_service_surrealkv",
    ]


def test_the_index_measures_every_filter_with_sane_figures(results: dict[str, dict[str, Any]]) -> None:
    index = results["memory_index"]
    assert index["memories"] == 10_000 and index["build_s"] > 0
    assert isinstance(index["met"], bool)
    assert index["exact_mismatches"] == 0
    names = {"unfiltered", "agent", "type", "since", "agent_type", "workflow", "hidden10", "hidden10_agent"}
    assert names <= set(_latencies(index))
    for name in names:
        assert 0 <= index[f"{name}_recall"] <= 1, name
        assert index[f"{name}_p99_ms"] >= index[f"{name}_p50_ms"] > 0, name
        assert 0 < index[f"{name}_pass_pct"] <= 100, name
    assert index["agent_pass_pct"] < index["type_pass_pct"] < index["unfiltered_pass_pct"] == 100
    assert 0 <= index["worst_recall"] <= 1 and index["worst_p99_ms"] > 0


def test_the_peers_search_the_same_vectors_with_sane_figures(results: dict[str, dict[str, Any]]) -> None:
    peers = results["memory_peers"]
    assert peers["usearch_build_s"] > 0 and peers["hnswlib_build_s"] > 0
    assert {"usearch", "hnswlib", "hnswlib_agent", "numpy"} <= set(_latencies(peers))
    for name in _latencies(peers):
        assert 0 <= peers[f"{name}_recall"] <= 1, name
        assert peers[f"{name}_p99_ms"] >= peers[f"{name}_p50_ms"] > 0, name
    assert peers["numpy_recall"] == 1.0  # brute force is the exact answer


def test_embedding_and_the_service_report_positive_costs(results: dict[str, dict[str, Any]]) -> None:
    embed = results["memory_embed"]
    assert embed["cold_first_embed_s"] > 0 and embed["batch64_per_s"] > 0
    assert embed["one_text_p99_ms"] >= embed["one_text_p50_ms"] > 0
    for store in ("memory_service_mem", "memory_service_surrealkv"):
        service = results[store]
        assert service["searches_short_of_k"] == 0, store
        assert service["index_load_ms"] > 0, store
        for name in ("remember", "search", "search_agent"):
            assert service[f"{name}_p99_ms"] >= service[f"{name}_p50_ms"] > 0, (store, name)
