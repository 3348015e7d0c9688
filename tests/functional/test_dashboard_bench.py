"""The dashboard bench's harness (never its speed): the real app runs under the feed, every figure is there.

A functional test because the bench runs the dashboard itself (Textual's headless driver).
"""

from __future__ import annotations

from typing import Any

from bench import dashboard_bench


def test_the_mix_has_output_from_every_task_progress_and_state_changes_in_both_shapes() -> None:
    for shape in ("line", "chunk"):
        mix = dashboard_bench.Mix(shape)
        events = [mix.event(n) for n in range(2_000)]
        kinds = {kind for kind, _, _ in events}
        assert {"task.output", "task.progress", "task.paused", "task.resumed", "task.retrying"} <= kinds
        outputs = [data for kind, _, data in events if kind == "task.output"]
        assert {task for kind, task, _ in events if kind == "task.output"} == set(dashboard_bench.TASKS)
        key = "line" if shape == "line" else "lines"
        assert all(key in data for data in outputs)
        assert any(data["stream"] == "stderr" for data in outputs)
        if shape == "chunk":
            assert mix.lines > len(outputs), "chunks carry several lines"


async def test_a_short_run_measures_frames_and_consumes_every_event() -> None:
    # A window of a few seconds: on a machine 5x slower than ours a frame can take half a second.
    figures = await dashboard_bench.dashboard_run("chunk", seconds=3.0, rate=500)
    assert figures["frames"] > 1
    assert 0 <= figures["gap_p50_ms"] <= figures["gap_p99_ms"] <= figures["gap_max_ms"]
    assert figures["sent_per_s"] > 0 and figures["lines_per_s"] > figures["sent_per_s"]
    assert figures["backlog_s"] is not None, "every event sent reached the widgets"
    assert 0 < figures["cpu_share_available"] <= 1.5


async def test_the_peer_runs_the_same_feed_without_the_app() -> None:
    figures = await dashboard_bench.peer_run("chunk", seconds=0.5, rate=500)
    assert figures["consumed_per_s"] > 0 and figures["sent_per_s"] > 0
    assert "gap_p50_ms" not in figures


def test_medians_skip_runs_that_never_caught_up() -> None:
    runs: list[dict[str, Any]] = [
        {"gap_max_ms": 10.0, "backlog_s": None},
        {"gap_max_ms": 30.0, "backlog_s": 0.2},
        {"gap_max_ms": 20.0, "backlog_s": 0.4},
    ]
    assert dashboard_bench.median_of(runs) == {"gap_max_ms": 20.0, "backlog_s": 0.3}


async def test_each_run_of_the_section_is_its_own_process_and_reports_its_figures() -> None:
    figures = await dashboard_bench.in_own_process("events", "chunk", 3.0)  # frames are drawn, even when slow
    assert figures["frames"] > 0 and figures["sent_per_s"] > 0 and "gap_max_ms" in figures
