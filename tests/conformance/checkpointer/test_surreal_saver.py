"""LangGraph's checkpointer conformance suite, whole, against ``SurrealSaver`` on ``mem://`` and ``surrealkv://``.

The suite (``langgraph-checkpoint-conformance``) is the contract every LangGraph checkpointer is held to; the
optional capabilities (delete_for_runs, copy_thread, prune) are run too, since ``SurrealSaver`` implements them.
Also here: the schema the saver relies on arrives with ``connect()``, and its changefeed records graph progress.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, BASE_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

from db import Database, connect
from db.checkpointer import SurrealSaver

# What the suite runs per capability in langgraph-checkpoint-conformance 0.0.2 (pinned exactly). A smaller number
# would mean tests went missing, not that we pass more easily.
EXPECTED_TESTS = {
    "put": 17,
    "put_writes": 10,
    "get_tuple": 10,
    "list": 16,
    "delete_thread": 5,
    "delete_for_runs": 7,
    "copy_thread": 8,
    "prune": 8,
}


def failures(report: CapabilityReport) -> str:
    lines = []
    for name, result in sorted(report.results.items()):
        lines.append(f"{name}: detected={result.detected} passed={result.tests_passed} failed={result.tests_failed}")
        lines.extend(f"    {failure}" for failure in result.failures)
    return "\n".join(lines)


async def test_the_whole_conformance_suite_passes(db_url: str) -> None:
    @checkpointer_test(name=f"SurrealSaver[{db_url.split(':')[0]}]")
    async def fresh_saver() -> AsyncIterator[SurrealSaver]:
        # One per capability suite; on surrealkv the same store is reopened, so suites also see each other's data.
        async with connect(db_url) as db:
            yield SurrealSaver(db)

    report = await validate(fresh_saver)
    details = failures(report)
    assert report.passed_all_base(), details
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} not detected\n{details}"
        assert result.passed is True and result.tests_failed == 0, details
        assert result.tests_passed == EXPECTED_TESTS[capability.value], details
    assert {c.value for c in BASE_CAPABILITIES} <= set(report.results)
    assert report.conformance_level() == "FULL", details


async def test_connect_applies_the_checkpoint_schema(database: Database) -> None:
    applied = await database.query_one("SELECT VALUE name FROM schema_version WHERE version = 4")
    assert applied == ["langgraph_checkpoints"]
    info = await database.query_one("INFO FOR DB")
    assert {"lg_checkpoint", "lg_write"} <= set(info["tables"])
    assert "CHANGEFEED 1d" in info["tables"]["lg_checkpoint"]


async def test_the_changefeed_records_each_checkpoint(database: Database) -> None:
    saver = SurrealSaver(database)
    config: RunnableConfig = {"configurable": {"thread_id": "watched", "checkpoint_ns": ""}}
    ids = []
    for step in range(3):
        checkpoint = {
            "v": 4,
            "id": f"00000000-0000-0000-0000-00000000000{step}",
            "ts": "2026-11-01T00:00:00+00:00",
            "channel_values": {"n": step},
            "channel_versions": {},
            "versions_seen": {},
            "updated_channels": None,
        }
        config = await saver.aput(config, checkpoint, {"source": "loop", "step": step}, {})  # type: ignore[arg-type]
        ids.append(checkpoint["id"])
    feed = await database.query_one("SHOW CHANGES FOR TABLE lg_checkpoint SINCE 0 LIMIT 100")
    updates = [change["update"] for entry in feed for change in entry["changes"] if "update" in change]
    assert [row["checkpoint_id"] for row in updates] == ids
    assert [row["metadata"]["step"] for row in updates] == [0, 1, 2]
    assert updates[2]["parent_checkpoint_id"] == ids[1]
