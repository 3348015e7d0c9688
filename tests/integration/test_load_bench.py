"""The load bench's harness (never its speed): each section runs in its own process and reports what it did."""

from __future__ import annotations

from bench import load_bench


async def test_the_flood_section_stores_every_line_in_its_own_process() -> None:
    result = (await load_bench._in_own_process("output_flood", 3))["output_flood"]
    assert result["lines_stored"] == 30_000
    assert result["every_line_stored"] and result["completed"]
    assert 0 < result["rss_before_mb"] <= result["rss_peak_mb"]


async def test_the_agents_section_sees_every_agent_finish() -> None:
    result = (await load_bench._in_own_process("concurrent_agents", 4))["concurrent_agents"]
    assert result["completed"]
    assert result["events"] >= 4 * 10  # ten log lines each, and progress besides
