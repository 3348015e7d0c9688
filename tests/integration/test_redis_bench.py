"""The Redis latency bench's harness (never its speed): every event is timed on both sides, and no Redis is a skip."""

from __future__ import annotations

import socket

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bench import redis_bench


@pytest.fixture
def main_redis() -> None:
    client = redis.Redis.from_url(redis_bench.REDIS_URL)
    try:
        client.ping()
    except (OSError, RedisConnectionError) as exc:
        pytest.skip(f"no Redis at {redis_bench.REDIS_URL}: {exc}")
    finally:
        client.close()


def bench_keys() -> set[bytes]:
    client = redis.Redis.from_url(redis_bench.REDIS_URL)
    try:
        return set(client.scan_iter(match="agentdeck-bench-*"))
    finally:
        client.close()


@pytest.mark.usefixtures("main_redis")
async def test_each_trial_times_every_event_and_leaves_no_keys_behind() -> None:
    before = bench_keys()
    for trial in (redis_bench.bus_trial, redis_bench.raw_trial):
        latencies, missing = await trial(300)
        assert (len(latencies), missing) == (300, 0)
        assert all(0 <= latency < 60 for latency in latencies)
    assert bench_keys() <= before, "the bus trial must delete the keys it made"


@pytest.mark.usefixtures("main_redis")
async def test_the_section_reports_medians_side_by_side_and_their_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_bench, "RATE_PER_S", 200)  # the harness, not the speed: keep it short
    section = (await redis_bench.run(quick=True))["redis_bus_latency"]
    assert section["repeats"] >= 3
    for side in ("bus", "raw"):
        assert 0 < section[f"{side}_p50_ms"] <= section[f"{side}_p99_ms"] <= section[f"{side}_max_ms"]
    assert section["p99_ratio"] == round(section["bus_p99_ms"] / section["raw_p99_ms"], 2)
    assert (section["missing_bus"], section["missing_raw"]) == (0, 0)
    assert section["met"] == (section["p99_ratio"] <= section["target_ratio"])


async def test_no_redis_is_reported_as_skipped_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(redis_bench, "REDIS_URL", f"redis://:pw-not-shown@127.0.0.1:{port}/0")
    section = (await redis_bench.run(quick=True))["redis_bus_latency"]
    assert set(section) == {"skipped"}
    assert "no Redis at redis://:***@127.0.0.1" in section["skipped"]
    assert "pw-not-shown" not in section["skipped"]
