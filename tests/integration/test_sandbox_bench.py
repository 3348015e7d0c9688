"""The sandbox bench's harness: every configuration this machine has is measured, figures are well-formed.
Never its speed."""

from __future__ import annotations

from bench import sandbox_bench
from engine.sandbox import bwrap_unavailable_reason, cgroup_support


async def test_the_sandbox_bench_measures_every_configuration_this_machine_has() -> None:
    figures = await sandbox_bench.measure(runs_per_repeat=10, repeats=1)
    expected = {"bare-subprocess", "plain/no-cgroup"}
    if cgroup_support() is not None:
        expected.add("plain/cgroup")
    if bwrap_unavailable_reason() is None:
        expected |= {"bwrap/no-cgroup"} | ({"bwrap/cgroup"} if cgroup_support() is not None else set())
    assert set(figures["p50_ms"]) == expected
    assert all(value > 0 for value in figures["p50_ms"].values())
    assert all(figures[name].startswith("p50 ") for name in expected)
    assert figures["plain_over_bare"] > 0
    assert figures["runs"] == "10 per configuration per repeat, 1 repeats"
