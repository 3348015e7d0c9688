"""The codec bench's harness (never its speed): both codecs see the same frames and agree, every figure is there."""

from __future__ import annotations

from surrealdb.data.cbor import decode as sdk_decode
from surrealdb.data.cbor import encode as sdk_encode

from bench import codec_bench
from db import _cbor, connect


async def test_both_codecs_are_timed_on_the_same_real_frames_and_agree() -> None:
    requests = {"events_50": codec_bench.frame("INSERT INTO event $rows", {"rows": codec_bench.output_events(0)})}
    async with connect("mem://") as db:
        replies = await codec_bench.real_replies(db)
    assert set(replies) == {"events_50", "tasks_50", "checkpoint"}
    assert [len(sdk_decode(reply)["result"][0]["result"]) for reply in replies.values()] == [50, 50, 1]
    for cases, sdk, ours in ((requests, sdk_encode, _cbor.encode), (replies, sdk_decode, _cbor.decode)):
        figures = codec_bench.compare(cases, sdk, ours, calls=1, repeats=3)
        assert figures["identical"] is True
        for name in cases:
            assert figures[f"{name}_sdk_us"] > 0 and figures[f"{name}_ours_us"] > 0 and figures[f"{name}_ratio"] > 0


async def test_round_trips_time_both_paths_at_every_percentile() -> None:
    figures = await codec_bench.roundtrip("mem://", quick=True, repeats=1)
    for case in ("return1", "insert50"):
        for side in ("sdk", "ours"):
            assert 0 < figures[f"{case}_{side}_p50_ms"] <= figures[f"{case}_{side}_p99_ms"]
        assert figures[f"{case}_ratio_p50"] > 0
    assert figures["return1_n_per_side"] == 100 and figures["insert50_n_per_side"] == 20
