"""db/_cbor.py against the SDK's own codec: the same bytes out, the same values in, the same errors.

The SDK side is the SDK itself (its ``RequestMessage`` frame, ``surrealdb.data.cbor.decode``), and replies come from
the real embedded engine, so a difference in either codec or in the SDK's next release shows up here.
"""

from __future__ import annotations

import importlib.util
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

import cbor2
import pytest
import surrealdb.request_message.descriptors.cbor_ws as sdk_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from surrealdb import (
    AsyncSurreal,
    Duration,
    GeometryLine,
    GeometryPoint,
    Null,
    PreciseDatetime,
    RecordID,
    SurrealSet,
    Table,
    UnexpectedResponseError,
)
from surrealdb.cbor import CBOREncodeValueError
from surrealdb.data.cbor import decode as sdk_decode
from surrealdb.data.cbor import encode as sdk_encode
from surrealdb.data.types.range import BoundExcluded, BoundIncluded, Range
from surrealdb.request_message.message import RequestMessage
from surrealdb.request_message.methods import RequestMethod

from db import Database, _cbor, models
from db.errors import DatabaseUnavailable, QueryFailed
from db.stores._codec import set_clause, to_row

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
WHEN = datetime(2026, 11, 3, 9, 15, 42, 123456, tzinfo=UTC)
SETTLE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)


def sdk_frame(request_id: str, sql: str, params: dict[str, Any]) -> bytes:
    """The bytes the SDK's ``query_raw`` hands the embedded engine."""
    message = RequestMessage(RequestMethod.QUERY, query=sql, params=params)
    message.id = request_id
    frame: bytes = message.WS_CBOR_DESCRIPTOR
    return frame


def assert_identical(ours: Any, sdk: Any, path: str = "value") -> None:
    """Equal and of the same types all the way down (``==`` alone would let ``None`` pass for ``[]`` in places)."""
    assert type(ours) is type(sdk), f"{path}: {type(ours).__name__} != {type(sdk).__name__}"
    if isinstance(ours, dict):
        assert list(ours) == list(sdk), f"{path}: keys {list(ours)} != {list(sdk)}"
        for key in ours:
            assert_identical(ours[key], sdk[key], f"{path}[{key!r}]")
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(sdk), f"{path}: length {len(ours)} != {len(sdk)}"
        for index, (a, b) in enumerate(zip(ours, sdk, strict=True)):
            assert_identical(a, b, f"{path}[{index}]")
    elif isinstance(ours, RecordID):
        assert_identical(ours.table_name, sdk.table_name, f"{path}.table_name")
        assert_identical(ours.id, sdk.id, f"{path}.id")
    elif isinstance(ours, Range):
        assert_identical(ours.begin, sdk.begin, f"{path}.begin")
        assert_identical(ours.end, sdk.end, f"{path}.end")
    elif isinstance(ours, BoundIncluded | BoundExcluded):
        assert_identical(ours.value, sdk.value, f"{path}.value")
    elif isinstance(ours, datetime):
        assert (ours, ours.tzinfo, getattr(ours, "nanosecond", None)) == (
            sdk,
            sdk.tzinfo,
            getattr(sdk, "nanosecond", None),
        ), path
    else:  # repr too: it tells NaN from NaN and -0.0 from 0.0, which == does not
        assert ours == sdk or repr(ours) == repr(sdk), f"{path}: {ours!r} != {sdk!r}"
        assert repr(ours) == repr(sdk), f"{path}: {ours!r} != {sdk!r}"


# ---- every stored record type -------------------------------------------------------------------------------------

NESTED = {"none": None, "list": [None, 1, "é", [None]], "deep": {"x": {"y": None}}, "max": I64_MAX, "min": I64_MIN}


def model_samples() -> dict[type[BaseModel], tuple[str, str, BaseModel]]:
    """One representative of each record type in db/models.py: (table, key, record)."""
    wf = models.Workflow(name="build ✓", spec={"tasks": [{"id": "a"}], "vars": NESTED}, vars={"k": "v"}, owner=None)
    task = models.Task(
        workflow=wf.id,
        key="compile",
        agent="builder",
        status=models.TaskStatus.RUNNING,
        depends_on=["prepare"],
        input={"target": "api", "n": 3},
        output={"result": NESTED, "ok": True},
        progress=0.5,
        started_at=WHEN,
    )
    checkpoint = models.Checkpoint(
        workflow=wf.id,
        number=7,
        reason="task completed",
        task="compile",
        event_seq=41,
        task_states={"compile": {"status": "completed", "output": NESTED, "attempts": 1, "error": None}},
        agent_states={"builder": {"n": 1}},
    )
    event = models.Event(
        seq=41,
        type="task.output",
        workflow=wf.id,
        task="compile",
        agent="builder",
        data={"stream": "stdout", "lines": ["naïve 🎉 output", "", "\t tab\x00nul"]},
    )
    memory = models.Memory(
        agent="writer",
        content="remember ünïcode",
        embedding=[i / 384 for i in range(384)],
        workflow=wf.id,
        metadata={"source": None, "tags": ["a", "b"]},
    )
    metric = models.Metric(name="task.seconds", value=1.25, agent="builder", workflow=wf.id, labels={"le": None})
    control = models.ControlRequest(workflow=wf.id, op="pause", args={"task": None, "reason": "because"})
    node = models.GraphNode(id=f"{wf.id}/plan/t1", workflow=wf.id, task="plan", thread="th-1", node="agent", step=3)
    approval = models.Approval(
        workflow=wf.id,
        task="plan",
        interrupt="i-1",
        node="review",
        prompt={"question": "ship it?", "options": [True, False, None]},
        default=False,
        deadline=WHEN + timedelta(minutes=5),
    )
    watchpoint = models.Watchpoint(
        workflow=wf.id, when='output ~ "Traceback|ünïcode"', task="compile", name="boom ✓", origin="file",
        triggered=2, last_triggered_at=WHEN,
    )  # fmt: skip
    return {
        models.Workflow: ("workflow", wf.id, wf),
        models.Task: ("task", task.id, task),
        models.Checkpoint: ("checkpoint", checkpoint.id, checkpoint),
        models.Event: ("event", event.id, event),
        models.Memory: ("agent_memory", memory.id, memory),
        models.Metric: ("agent_metric", models.new_id(), metric),
        models.ControlRequest: ("control_request", control.id, control),
        models.GraphNode: ("graph_node", node.id, node),
        models.Approval: ("approval", approval.id, approval),
        models.Watchpoint: ("watchpoint", watchpoint.id, watchpoint),
    }


def checkpointer_rows() -> dict[str, tuple[RecordID, dict[str, Any]]]:
    """The LangGraph saver's two row shapes (array record ids, a serialized blob, NONE parent)."""
    blob = bytes(range(256)) * 3  # every byte value, 0xf6 (null) and 0xc6 (tag 6) among them
    same = {"thread_id": "t1", "checkpoint_ns": "", "checkpoint_id": "1ef-0", "type": "msgpack"}
    checkpoint = {**same, "parent_checkpoint_id": None, "checkpoint": blob, "metadata": {"step": -1, "parents": {}}}
    write = {**same, "task_id": "task-1", "task_path": "", "idx": -1, "channel": "__error__", "value": blob[:10]}
    return {
        "lg_checkpoint": (RecordID("lg_checkpoint", ["t1", "", "1ef-0"]), checkpoint),
        "lg_write": (RecordID("lg_write", ["t1", "", "1ef-0", "task-1", -1]), write),
    }


def test_the_installed_cbor2_is_compiled() -> None:
    spec = importlib.util.find_spec("cbor2._cbor2")
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith((".so", ".pyd")), spec.origin
    assert type(cbor2.dumps).__name__ == "builtin_function_or_method"


def test_samples_cover_every_record_type() -> None:
    record_types = {cls for cls in vars(models).values() if isinstance(cls, type) and issubclass(cls, models.Record)}
    assert set(model_samples()) == record_types - {models.Record}


@pytest.mark.parametrize("model", list(model_samples()), ids=lambda cls: cls.__name__)
def test_a_record_encodes_as_the_sdk_encodes_it(model: type[BaseModel]) -> None:
    table, key, record = model_samples()[model]
    row = to_row(record, table, key)
    sql = f"INSERT INTO {table} $rows RETURN NONE"
    assert _cbor.encode_query("req-1", sql, {"rows": [row, row]}) == sdk_frame("req-1", sql, {"rows": [row, row]})
    fields = {name: getattr(record, name) for name in type(record).model_fields if name != "id"}
    clause, params = set_clause(type(record), fields)
    sql = f"UPDATE $id SET {clause}"
    params["id"] = RecordID(table, key)
    assert _cbor.encode_query("req-2", sql, params) == sdk_frame("req-2", sql, params)


@pytest.mark.parametrize("table", list(checkpointer_rows()))
def test_a_checkpointer_row_encodes_as_the_sdk_encodes_it(table: str) -> None:
    record_id, row = checkpointer_rows()[table]
    params = {"id": record_id, "row": row}
    assert _cbor.encode_query("r", "UPSERT $id CONTENT $row", params) == sdk_frame(
        "r", "UPSERT $id CONTENT $row", params
    )


# ---- adversarial values -------------------------------------------------------------------------------------------


class Colour(StrEnum):
    RED = "red"


def nested(depth: int, make: Any) -> Any:
    value: Any = None
    for _ in range(depth):
        value = make(value)
    return value


ADVERSARIAL: dict[str, Any] = {
    "none_and_null": [None, Null, {"a": None, "b": Null, "c": [None, Null, {"d": [Null, None]}]}],
    "i64_limits": [I64_MAX, I64_MIN, I64_MAX - 1, I64_MIN + 1, 0, -1, 23, 24, 255, 256, 65535, 65536, 2**32],
    "floats": [0.0, -0.0, 1.5, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan")],
    "unicode": ["", "é", "🎉" * 100, "\x00", "\u2028", "\uff21\uff22\uff23", "a\nb\r\nc", "x" * 70_000],
    "bytes": [b"", b"\x00\xf6\xc6", bytes(range(256)), bytearray(b"buf"), b"\xff" * 70_000],
    "deep_lists": nested(100, lambda inner: [inner, 1]),
    "deep_dicts": nested(100, lambda inner: {"k": inner, "n": None}),
    "record_ids": [RecordID("t", "x"), RecordID("t", 7), RecordID("t", ["a", None, Null, 1]), RecordID("t", {"k": 1})],
    "surreal_types": [Table("event"), Duration(0), Duration(5_400_000_000_123), SurrealSet([1, "a"]), {1, 2}],
    "ranges": [Range(BoundIncluded(1), BoundExcluded(9)), Range(BoundIncluded(None), BoundExcluded(Null))],
    "geometry": [GeometryPoint(1.5, -2.5), GeometryLine(GeometryPoint(0.0, 0.0), GeometryPoint(1.0, 1.0))],
    "datetimes": [
        WHEN,
        WHEN.replace(microsecond=0),
        WHEN.replace(tzinfo=None),
        date(2026, 1, 2),
        WHEN.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
        PreciseDatetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC, nanosecond=789),
    ],
    "other_scalars": [True, False, Decimal("1.10"), Decimal("-1E+30"), Decimal("NaN"), uuid.UUID(int=7), Colour.RED],
    "containers": [(), (1, (2,)), {}, [], {"": 1, "k" * 300: [{}]}, {1: "int key"}],
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_values_encode_and_decode_as_the_sdk_does(name: str) -> None:
    value = ADVERSARIAL[name]
    frame = _cbor.encode(value)
    assert frame == sdk_encode(value)
    assert_identical(_cbor.decode(frame), sdk_decode(frame))


def test_maps_with_keys_surrealdb_never_sends_encode_as_the_sdk_does() -> None:
    # Decoding keeps a null key None (the SDK: Null): SurrealDB objects have string keys only, so the pass that
    # respells nulls looks at values alone.
    value = {None: 1, Null: 2, 3: [None], (4, None): {"k": Null}, RecordID("t", 1): 5}
    assert _cbor.encode(value) == sdk_encode(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (I64_MAX + 1, ValueError),
        (I64_MIN - 1, ValueError),
        ([2**64], ValueError),
        (object(), TypeError),
        ({"k": range(3)}, TypeError),
        ("\ud800", UnicodeEncodeError),
    ],
)
def test_values_the_sdk_refuses_are_refused_with_its_error(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as sdk:
        sdk_encode(value)
    with pytest.raises(error) as ours:
        _cbor.encode(value)
    assert str(ours.value) == str(sdk.value)


def test_a_cycle_is_refused_as_the_sdk_refuses_it() -> None:
    loop: dict[str, Any] = {"a": [1]}
    loop["a"].append(loop)
    with pytest.raises(CBOREncodeValueError, match="cyclic"):
        sdk_encode(loop)
    with pytest.raises(CBOREncodeValueError, match="cyclic"):
        _cbor.encode(loop)


def test_an_unknown_tag_is_refused_as_the_sdk_refuses_it() -> None:
    for tag in (77, 52, 43000):  # 52 and 43000: cbor2 knows them, the SDK does not
        frame = cbor2.dumps([1, cbor2.CBORTag(tag, b"\x01\x02\x03\x04")])
        with pytest.raises(UnexpectedResponseError, match=f"tag {tag}"):
            sdk_decode(frame)
        with pytest.raises(UnexpectedResponseError, match=f"tag {tag}"):
            _cbor.decode(frame)


# ---- generated values ---------------------------------------------------------------------------------------------

keys = st.text(max_size=8)
scalars = st.one_of(
    st.none(),
    st.just(Null),
    st.booleans(),
    st.integers(min_value=I64_MIN, max_value=I64_MAX),
    st.floats(),
    st.text(),
    st.binary(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
    st.decimals(),
    st.uuids(),
    st.builds(Duration, st.integers(min_value=0, max_value=I64_MAX)),
    st.builds(RecordID, st.text(min_size=1, max_size=8), st.one_of(st.text(max_size=8), st.integers(0, I64_MAX))),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5),
        st.frozensets(st.one_of(st.integers(0, 1000), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=40,
)


@SETTLE
@given(values)
def test_generated_values_encode_and_decode_as_the_sdk_does(value: Any) -> None:
    frame = _cbor.encode(value)
    assert frame == sdk_encode(value)
    assert_identical(_cbor.decode(frame), sdk_decode(frame))


@SETTLE
@given(
    st.integers(min_value=-62_135_596_800, max_value=253_402_300_799),
    st.integers(min_value=0, max_value=999_999_999),
    st.integers(min_value=0, max_value=2),
)
def test_server_datetimes_and_durations_decode_as_the_sdk_does(seconds: int, nanos: int, parts: int) -> None:
    payload = [seconds, nanos][:parts]  # the server leaves out trailing zero parts
    frame = cbor2.dumps([cbor2.CBORTag(12, payload), cbor2.CBORTag(14, [abs(seconds), nanos][:parts])])
    assert_identical(_cbor.decode(frame), sdk_decode(frame))


# ---- through the embedded engine ----------------------------------------------------------------------------------


async def both_paths(db: Database, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``db.query`` through our codec and through the SDK: each result, or the error it raised."""
    outcomes: list[Any] = []
    for native in (True, False):
        db.native_codec = native
        try:
            outcomes.append(await db.query(sql, params))
        except Exception as exc:
            outcomes.append((type(exc), str(exc)))
    db.native_codec = True
    return outcomes[0], outcomes[1]


async def test_embedded_connections_use_our_codec(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    assert database.native_codec

    def refuse(value: Any) -> bytes:
        raise AssertionError("the SDK's encoder was used")

    monkeypatch.setattr(sdk_frames, "encode", refuse)
    assert await database.query("RETURN $v", {"v": [1, None]}) == [[1, None]]


def test_server_connections_keep_the_sdk() -> None:
    assert not Database(AsyncSurreal("ws://127.0.0.1:9/rpc"), "ws://127.0.0.1:9", "server").native_codec


async def test_every_record_type_reads_back_as_through_the_sdk(database: Database) -> None:
    for table, key, record in model_samples().values():
        await database.query(f"INSERT INTO {table} $rows RETURN NONE", {"rows": [to_row(record, table, key)]})
    for record_id, row in checkpointer_rows().values():
        await database.query("UPSERT $id CONTENT $row RETURN NONE", {"id": record_id, "row": row})
    for table in [table for table, _, _ in model_samples().values()] + list(checkpointer_rows()):
        ours, sdk = await both_paths(database, f"SELECT * FROM {table}; SELECT VALUE id FROM {table}")
        assert ours[0], f"nothing stored in {table}"
        assert_identical(ours, sdk, table)


@pytest.mark.parametrize("name", list(ADVERSARIAL))
async def test_adversarial_values_survive_the_engine_as_through_the_sdk(database: Database, name: str) -> None:
    ours, sdk = await both_paths(database, "RETURN $v; RETURN [$v, NONE, NULL]", {"v": ADVERSARIAL[name]})
    assert_identical(ours, sdk)


async def test_errors_are_reported_as_through_the_sdk(database: Database) -> None:
    for sql in ("SELEC nonsense", "THROW 'stop'", "RETURN 1; CREATE event:x SET bogus = 1"):
        ours, sdk = await both_paths(database, sql)
        assert ours == sdk and ours[0] is QueryFailed, (sql, ours)
    ours, sdk = await both_paths(database, "RETURN $v", {"v": [2**64]})  # refused before it reaches the engine
    assert ours == sdk and ours[0] is ValueError, ours
    await database.sdk._db.close()  # the engine goes away under us
    ours, sdk = await both_paths(database, "RETURN 1")
    assert ours == sdk and ours[0] is DatabaseUnavailable, ours
