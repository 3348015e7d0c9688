"""The change-watch bench's harness (never its speed): both modes see every write, reads and CPU are counted."""

from __future__ import annotations

from bench import watch_bench
from db import connect


async def test_a_short_latency_run_sees_every_write_in_both_modes() -> None:
    async with connect("mem://") as db:
        counter = watch_bench.ReadCounter(db)
        first = 0
        for mode in watch_bench.MODES:
            figures = await watch_bench.latency_run(db, counter, mode, [0.002] * 50, first)
            first += 50
            assert figures["lost"] == 0, f"{mode}: a write was never seen"
            assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
            assert figures["writes_per_s"] > 0 and figures["reads_per_s"] > 0


async def test_idle_runs_count_feed_reads_only_while_watchers_run() -> None:
    async with connect("mem://") as db:
        counter = watch_bench.ReadCounter(db)
        nobody = await watch_bench.idle_run(db, counter, None, 0.2)
        polling = await watch_bench.idle_run(db, counter, "poll", 0.2)
    assert nobody["reads_per_s"] == 0
    assert polling["reads_per_s"] > 0, "three polling watchers read the feed"
    assert nobody["cpu_ms_per_s"] >= 0 and polling["cpu_ms_per_s"] > 0


async def test_figures_are_medians_of_repeats_with_the_peer_beside_them() -> None:
    figures = await watch_bench.idle("mem://", quick=True, repeats=3)
    assert figures["repeats"] == 3
    assert {"none_reads_per_s", "commit_reads_per_s", "poll_reads_per_s", "commit_cpu_ms_per_s"} <= set(figures)
