"""The replay's metrics panel figures (``tui.widgets.replay_metrics.figures``): counts from the state, means over the
intervals so far, and CPU/RSS only while samples are fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.models import Metric, Task, TaskStatus
from engine.replay import ReplayState
from tui.widgets.replay_metrics import SPARK_S, figures, sparkline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def state() -> ReplayState:
    tasks = [Task(workflow="wf-1", key=key, agent="sh") for key in ("a", "b", "c")]
    out = ReplayState.initial(tasks)
    out._set("a", status=TaskStatus.COMPLETED)
    out._set("b", status=TaskStatus.RUNNING)
    out._set("c", status=TaskStatus.FAILED)
    return out


def metric(name: str, value: float, at_s: float, count: int = 1) -> Metric:
    return Metric(name=name, value=value, count=count, agent="sh", workflow="wf-1", ts=T0 + timedelta(seconds=at_s))


def test_counts_come_from_the_state_and_means_from_the_intervals() -> None:
    rows = figures(state(), [metric("task_duration_s", 3.0, 1, count=2), metric("task_duration_s", 3.0, 2)], T0)
    sh = rows["sh"]
    assert (sh.running, sh.done, sh.failed) == (1, 1, 1)
    assert sh.mean_duration == 2.0 and sh.mean_wait is None


def test_cpu_is_a_sparkline_of_the_last_seconds_and_now_only_while_fresh() -> None:
    samples = [metric("cpu_percent", v, at) for at, v in ((1, 10.0), (5, 50.0), (7, 100.0))]
    samples.append(metric("rss_mb", 40.0, 7, count=2))
    sh = figures(state(), samples, T0 + timedelta(seconds=8))["sh"]
    assert sh.cpu_now == 100.0 and sh.rss_now == 20.0
    assert len(sh.cpu) == SPARK_S and sh.cpu[-2] == 100.0 and sh.cpu[-4] == 50.0
    line = sparkline(sh.cpu)
    assert line[-2] == "█" and line[-4] == "▅" and line[-1] == "▁"
    later = figures(state(), samples, T0 + timedelta(seconds=30))["sh"]
    assert later.cpu_now is None and later.rss_now is None and sparkline(later.cpu) == "▁" * SPARK_S
