"""CBOR codec: db/_cbor.py (cbor2, compiled) next to the SDK's pure-Python codec, on agentdeck's own traffic.

Both run in this process on the same frames, taking turns, and each figure is the median over the repeats:

- ``codec_encode`` / ``codec_decode``: microseconds per call to encode three request frames the engine sends (50
  ``task.output`` events of 10 lines each, 50 task updates in the group commit's ``FOR … UPDATE`` shape, one full
  checkpoint row of 50 task states) and to decode the engine's real replies when those records are read back.
  ``ratio`` is the SDK's time over ours; ``identical`` says both codecs gave the same bytes and values.
- ``codec_roundtrip_mem`` / ``codec_roundtrip_surrealkv``: ``Database.query`` latency, p50 and p99, of ``RETURN 1``
  and of inserting 50 such events, through the SDK (``db.native_codec = False``) and through ours, on ``mem://`` and
  a temporary ``surrealkv://`` store, in alternating blocks.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from surrealdb import RecordID
from surrealdb.data.cbor import decode as sdk_decode
from surrealdb.data.cbor import encode as sdk_encode

from bench._stats import percentile
from db import Database, _cbor, connect
from db.models import Checkpoint, Event, EventType, Task, TaskStatus, utcnow
from db.stores._codec import to_row

BATCH = 50
WORKFLOW = "wf-bench"
TASK_UPDATE_SQL = (
    "FOR $u IN $t0 { UPDATE $u.id SET attempts = $u.f.attempts, error = $u.f.error, "
    "started_at = $u.f.started_at, status = $u.f.status RETURN NONE };"
)


def output_events(start: int) -> list[dict[str, Any]]:
    """Fifty ``task.output`` event rows (chunked lines, as the engine stores them), with fresh ids."""
    events = [
        Event(
            seq=start + i,
            type=EventType.TASK_OUTPUT,
            workflow=WORKFLOW,
            task=f"task-{i % 8}",
            agent="shell",
            data={
                "stream": "stdout",
                "lines": [f"[{i}:{j}] compiling module_{j}.py ... ok ({7 * j} ms)" for j in range(10)],
            },
        )
        for i in range(BATCH)
    ]
    return [to_row(event, "event", event.id) for event in events]


def tasks() -> list[Task]:
    return [
        Task(
            workflow=WORKFLOW,
            key=f"task-{i}",
            agent="shell",
            status=TaskStatus.COMPLETED,
            depends_on=[f"task-{i - 1}"] if i else [],
            input={"run": f"make target-{i}"},
            output={"exit_code": 0, "stdout_tail": f"built target-{i}\n" * 3, "artifacts": [f"out/{i}.o"]},
            attempts=1,
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        for i in range(BATCH)
    ]


def task_updates() -> dict[str, Any]:
    """The group commit's parameters for 50 tasks starting (NONE clears ``error``)."""
    now = utcnow()
    return {
        "t0": [
            {
                "id": RecordID("task", task.id),
                "f": {"attempts": 1, "error": None, "started_at": now, "status": "running"},
            }
            for task in tasks()
        ]
    }


def checkpoint_row() -> dict[str, Any]:
    states = {
        t.key: {"status": t.status.value, "output": t.output, "attempts": t.attempts, "error": None} for t in tasks()
    }
    checkpoint = Checkpoint(workflow=WORKFLOW, number=1, reason="tick", task_states=states, agent_states={"shell": {}})
    return to_row(checkpoint, "checkpoint", checkpoint.id)


def frame(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "method": "query", "params": [sql, params]}


async def real_replies(db: Database) -> dict[str, bytes]:
    """The engine's reply frames, as bytes, to reading back the benchmark's events, tasks and checkpoint."""
    await db.query("INSERT INTO event $rows RETURN NONE", {"rows": output_events(0)})
    await db.query("INSERT INTO task $rows RETURN NONE", {"rows": [to_row(t, "task", t.id) for t in tasks()]})
    await db.query("INSERT INTO checkpoint $rows RETURN NONE", {"rows": [checkpoint_row()]})
    replies = {}
    for name, table in (("events_50", "event"), ("tasks_50", "task"), ("checkpoint", "checkpoint")):
        request = _cbor.encode_query("read", f"SELECT * FROM {table} WHERE workflow = $wf", {"wf": WORKFLOW})
        replies[name] = bytes(await db.sdk._db.execute(request))
    return replies


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def compare(
    cases: dict[str, Any], sdk: Callable[[Any], Any], ours: Callable[[Any], Any], calls: int, repeats: int
) -> dict[str, Any]:
    """Each case through both codecs, taking turns (the first to run alternates), ``repeats`` times."""
    figures: dict[str, Any] = {"repeats": repeats, "calls": calls}
    identical = True
    for name, case in cases.items():
        identical &= repr(sdk(case)) == repr(ours(case))
        times: dict[str, list[float]] = {"sdk": [], "ours": []}
        for repeat in range(repeats):
            pair = [("sdk", sdk), ("ours", ours)]
            for side, codec in pair if repeat % 2 == 0 else pair[::-1]:
                times[side].append(per_call_us(functools.partial(codec, case), calls))
        sdk_us, ours_us = statistics.median(times["sdk"]), statistics.median(times["ours"])
        figures[f"{name}_sdk_us"] = round(sdk_us, 1)
        figures[f"{name}_ours_us"] = round(ours_us, 1)
        figures[f"{name}_ratio"] = round(sdk_us / ours_us, 2)
    figures["identical"] = identical
    return figures


async def roundtrip(url: str, quick: bool, repeats: int) -> dict[str, Any]:
    """``Database.query`` latency through either codec, in blocks that alternate which codec goes first."""
    blocks = 4
    counts = {"return1": 100 if quick else 400, "insert50": 20 if quick else 80}
    seq = iter(range(BATCH, 10**9, BATCH))
    figures: dict[str, Any] = {"repeats": repeats}
    async with connect(url) as db:

        async def return1() -> None:
            await db.query("RETURN 1")

        def insert50() -> Callable[[], Awaitable[Any]]:
            rows = output_events(next(seq))  # built before the clock starts

            async def insert() -> None:
                await db.query("INSERT INTO event $rows RETURN NONE", {"rows": rows})

            return insert

        for case, count in counts.items():
            p50: dict[str, list[float]] = {"sdk": [], "ours": []}
            p99: dict[str, list[float]] = {"sdk": [], "ours": []}
            for repeat in range(repeats):
                timings: dict[str, list[float]] = {"sdk": [], "ours": []}
                for block in range(blocks):
                    order = ["sdk", "ours"] if (repeat + block) % 2 == 0 else ["ours", "sdk"]
                    for side in order:
                        db.native_codec = side == "ours"
                        for _ in range(count // blocks):
                            call = return1 if case == "return1" else insert50()
                            start = time.perf_counter()
                            await call()
                            timings[side].append(time.perf_counter() - start)
                for side, values in timings.items():
                    p50[side].append(percentile(values, 50) * 1000)
                    p99[side].append(percentile(values, 99) * 1000)
            db.native_codec = True
            for side in ("sdk", "ours"):
                figures[f"{case}_{side}_p50_ms"] = round(statistics.median(p50[side]), 3)
                figures[f"{case}_{side}_p99_ms"] = round(statistics.median(p99[side]), 3)
            for stat in ("p50", "p99"):
                ours = figures[f"{case}_ours_{stat}_ms"]
                figures[f"{case}_ratio_{stat}"] = round(figures[f"{case}_sdk_{stat}_ms"] / ours, 2) if ours else None
            figures[f"{case}_n_per_side"] = count // blocks * blocks * repeats
    return figures


async def run(quick: bool) -> dict[str, dict[str, Any]]:
    repeats = 3 if quick else 5
    calls = 10 if quick else 50
    requests = {
        "events_50": frame("INSERT IGNORE INTO event $events RETURN NONE;", {"events": output_events(0)}),
        "task_updates_50": frame(TASK_UPDATE_SQL, task_updates()),
        "checkpoint": frame(
            "INSERT IGNORE INTO checkpoint $checkpoints RETURN NONE;", {"checkpoints": [checkpoint_row()]}
        ),
    }
    async with connect("mem://") as db:
        replies = await real_replies(db)
    encode = compare(requests, sdk_encode, _cbor.encode, calls, repeats)
    decode = compare(replies, sdk_decode, _cbor.decode, calls, repeats)
    for name, request in requests.items():
        encode[f"{name}_bytes"] = len(_cbor.encode(request))
    for name, reply in replies.items():
        decode[f"{name}_bytes"] = len(reply)
    with tempfile.TemporaryDirectory(prefix="agentdeck-codec-bench-") as tmp:
        on_file = await roundtrip(f"surrealkv://{Path(tmp) / 'state.db'}", quick, repeats)
    on_memory = await roundtrip("mem://", quick, repeats)
    return {
        "codec_encode": encode,
        "codec_decode": decode,
        "codec_roundtrip_mem": on_memory,
        "codec_roundtrip_surrealkv": on_file,
    }
