"""The embedded engine's CBOR frames, encoded and decoded by cbor2's compiled codec instead of the SDK's Python one.

The SurrealDB SDK talks to its embedded engine in CBOR RPC frames, and it encodes and decodes them with a bundled
pure-Python codec (``surrealdb.cbor``, set up in ``surrealdb.data.cbor``): profiled, that was 38 % of the engine's
main thread. This module produces the very same bytes and the very same Python values with cbor2, whose codec is
compiled (Rust). ``tests/unit/test_cbor_codec.py`` compares the two on bytes and values.

SurrealDB's dialect differs from plain CBOR in ways cbor2 cannot be told about without a Python call per value
(its ``encoders=`` hook costs a raised ``KeyError`` per value, measured 2-3x slower), so each side does one cheap
Python pass and leaves the byte work to cbor2:

- encode: ``_prep`` rewrites a value into what cbor2 writes natively: ``None`` (SurrealDB NONE) becomes tag 6 over
  null, ``Null`` (NULL) a plain null, sets tag 56, ``Decimal`` tag 10, datetimes the SDK's tag 0 string, record
  ids and the other SDK types their tags; it refuses what the SDK refuses (ints outside i64, unknown types), with
  the SDK's own exception types and messages.
- decode (db/_cbor_decode.py): cbor2 reads both null and tag 6 as ``None``; tag 6 decodes to a marker, and one
  pass turns each plain ``None`` into ``Null`` and each marker into ``None``. Tags become the SDK's types.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import Message
from fractions import Fraction
from typing import Any, Final

import cbor2
from surrealdb import (
    Datetime,
    Duration,
    File,
    GeometryCollection,
    GeometryLine,
    GeometryMultiLine,
    GeometryMultiPoint,
    GeometryMultiPolygon,
    GeometryPoint,
    GeometryPolygon,
    NullType,
    PreciseDatetime,
    RecordID,
    SurrealSet,
    Table,
)
from surrealdb.cbor import CBOREncodeValueError, CBORSimpleValue, CBORTag, FrozenDict, undefined
from surrealdb.data.types.range import BoundExcluded, BoundIncluded, Range

from db._cbor_decode import decode

__all__ = ["decode", "encode", "encode_query"]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_NONE_TAG: Final = cbor2.CBORTag(6, None)  # how the SDK writes None: SurrealDB NONE, "\xc6\xf6"
_UTC: Final = UTC  # the very object `datetime.now(UTC)` carries: `_prep` tests identity

Prep = Callable[[Any], Any]


def encode_query(request_id: str, sql: str, params: Mapping[str, Any]) -> bytes:
    """The ``query`` RPC frame the SDK's ``query_raw(sql, params)`` sends (its ``prep_query``)."""
    return encode({"id": request_id, "method": "query", "params": [sql, params]})


def encode(value: Any) -> bytes:
    """``surrealdb.data.cbor.encode(value)``, byte for byte.

    Raises:
        TypeError: a value the SDK cannot encode either (same message).
        ValueError: an int outside SurrealDB's signed 64-bit range, or a cyclic structure (as the SDK).
    """
    try:
        prepared = _prep(value)
    except RecursionError:
        # The SDK reports a cycle as CBOREncodeValueError; looking for one only after the fact keeps the
        # per-value pass free of bookkeeping. A deep but acyclic value stays a RecursionError, as in the SDK.
        if _has_cycle(value):
            raise CBOREncodeValueError("cyclic data structure detected but value sharing is disabled") from None
        raise
    return cbor2.dumps(prepared)


def _prep(v: Any) -> Any:
    """``v`` as cbor2-native values that encode to the SDK's bytes (the hot types inline, the rest by handler)."""
    t = type(v)
    if t is str or t is float or t is bool or t is bytes:
        return v
    if t is dict:
        return {(k if type(k) is str else _key(k)): (x if type(x) is str else _prep(x)) for k, x in v.items()}
    if t is list or t is tuple:
        return [x if type(x) is str else _prep(x) for x in v]
    if t is int:
        if _I64_MIN <= v <= _I64_MAX:
            return v
        return _int(v)
    if v is None:
        return _NONE_TAG
    if t is datetime and v.tzinfo is _UTC:
        return v  # cbor2 writes it as the SDK does (isoformat, "+00:00" as "Z"), without a Python call
    if t is RecordID:
        return _record_id_tag(v)
    handler = _HANDLERS.get(t) or _resolve(t)
    return handler(v)


def _key(k: Any) -> Any:
    """A map key that is not a string, prepared and kept hashable: arrays as tuples (cbor2 writes both alike)."""
    return _hashable(_prep(k))


def _hashable(v: Any) -> Any:
    if type(v) is list:
        return tuple(_hashable(x) for x in v)
    if type(v) is cbor2.CBORTag:
        return cbor2.CBORTag(v.tag, _hashable(v.value))
    return v


def _record_id_tag(v: RecordID) -> cbor2.CBORTag:
    table, key = v.table_name, v.id
    return cbor2.CBORTag(8, [table if type(table) is str else _prep(table), key if type(key) is str else _prep(key)])


def _int(v: int) -> int:
    if not _I64_MIN <= v <= _I64_MAX:
        raise ValueError(
            f"integer {v} is outside SurrealDB's signed 64-bit range ({_I64_MIN} to {_I64_MAX}); it would be "
            "stored as a different number. Send it as a string or a Decimal instead."
        )
    return v


def _datetime(v: datetime) -> cbor2.CBORTag:
    # The SDK's cbor2 ``encode_datetime`` with ``timezone=utc``: naive means UTC, "+00:00" is written "Z".
    if not v.tzinfo:
        v = v.replace(tzinfo=_UTC)
    return cbor2.CBORTag(0, v.isoformat().replace("+00:00", "Z"))


def _decimal(v: Decimal) -> Any:
    # NaN and the infinities go out as the half floats the SDK writes (cbor2 writes a float NaN/inf so).
    if v.is_nan():
        return float("nan")
    if v.is_infinite():
        return float("inf") if v > 0 else float("-inf")
    return cbor2.CBORTag(10, str(v))


def _tag(number: int, convert: Prep) -> Prep:
    return lambda v: cbor2.CBORTag(number, _prep(convert(v)))


def _seq(v: Any) -> list[Any]:
    return [_prep(x) for x in v]


def _map(v: Mapping[Any, Any]) -> dict[Any, Any]:
    return {_key(k): _prep(x) for k, x in v.items()}


# What the SDK's encoder finds for a type through ``issubclass``, in its order: the first match wins, so a
# subclass of ``SurrealSet`` is a plain array and one of ``PreciseDatetime`` a microsecond datetime, as there.
_BY_SUBCLASS: Final[list[tuple[type, Prep]]] = [
    (bytes, bytes),
    (bytearray, bytes),
    (str, lambda v: v),
    (int, _int),
    (float, lambda v: v),
    (Decimal, _decimal),
    (tuple, _seq),
    (list, _seq),
    (dict, _map),
    (FrozenDict, _map),
    (type(undefined), lambda v: cbor2.undefined),
    (datetime, _datetime),
    (date, lambda v: cbor2.CBORTag(1004, v.isoformat())),
    (re.Pattern, lambda v: cbor2.CBORTag(35, str(v.pattern))),
    (Fraction, _tag(30, lambda v: [v.numerator, v.denominator])),
    (Message, lambda v: cbor2.CBORTag(36, v.as_string())),
    (uuid.UUID, lambda v: cbor2.CBORTag(37, v.bytes)),
    (ipaddress.IPv4Address, lambda v: cbor2.CBORTag(260, v.packed)),
    (ipaddress.IPv6Address, lambda v: cbor2.CBORTag(260, v.packed)),
    (ipaddress.IPv4Network, lambda v: cbor2.CBORTag(261, {v.network_address.packed: v.prefixlen})),
    (ipaddress.IPv6Network, lambda v: cbor2.CBORTag(261, {v.network_address.packed: v.prefixlen})),
    (CBORSimpleValue, lambda v: cbor2.CBORSimpleValue(v.value)),
    (CBORTag, lambda v: cbor2.CBORTag(v.tag, _prep(v.value))),
]

# The SDK's ``default_encoder``, consulted through ``isinstance`` when nothing above matched.
_BY_INSTANCE: Final[list[tuple[type | tuple[type, ...], Prep]]] = [
    (GeometryPoint, _tag(88, lambda v: v.get_coordinates())),
    (GeometryLine, _tag(89, lambda v: v.geometry_points)),
    (GeometryPolygon, _tag(90, lambda v: v.geometry_lines)),
    (GeometryMultiLine, _tag(92, lambda v: v.geometry_lines)),
    (GeometryMultiPoint, _tag(91, lambda v: v.geometry_points)),
    (GeometryMultiPolygon, _tag(93, lambda v: v.geometry_polygons)),
    (GeometryCollection, _tag(94, lambda v: v.geometries)),
    (RecordID, _tag(8, lambda v: [v.table_name, v.id])),
    (Table, _tag(7, lambda v: v.table_name)),
    (File, _tag(55, lambda v: [v.bucket, v.key])),
    (BoundIncluded, _tag(50, lambda v: v.value)),
    (BoundExcluded, _tag(51, lambda v: v.value)),
    (Range, _tag(49, lambda v: [v.begin, v.end])),
    (Duration, _tag(14, lambda v: v.get_seconds_and_nano())),
    (Datetime, _tag(0, lambda v: v.dt)),
    ((set, frozenset), _tag(56, list)),
    (NullType, lambda v: None),
]

# Exact types first, as the SDK's encoder looks them up before any subclass search.
_HANDLERS: dict[type, Prep] = {
    **{t: h for t, h in _BY_SUBCLASS if isinstance(t, type)},
    bool: lambda v: v,
    SurrealSet: _tag(56, list),
    PreciseDatetime: lambda v: cbor2.CBORTag(0, v.isoformat_with_nanoseconds()),
}


def _resolve(t: type) -> Prep:
    """The handler for a type met for the first time (then cached), or the SDK's TypeError."""
    handler = next((h for base, h in _BY_SUBCLASS if issubclass(t, base)), None)
    if handler is None:
        handler = next((h for base, h in _BY_INSTANCE if issubclass(t, base)), None)
    if handler is None:
        raise TypeError(
            f"cannot encode {t.__name__} for SurrealDB; supported types are the JSON scalars, list, dict, set, "
            "bytes, and the surrealdb data types (RecordID, Table, Datetime, Duration, Range, Geometry, Decimal, UUID)"
        )
    _HANDLERS[t] = handler
    return handler


def _has_cycle(value: Any) -> bool:
    """Whether a container holds itself, searched without recursion."""
    on_path: set[int] = set()
    stack: list[tuple[Any, Any]] = [(value, None)]
    while stack:
        node, children = stack[-1]
        if children is None:
            if id(node) in on_path:
                return True
            if isinstance(node, Mapping):
                kids: list[Any] = [*node.keys(), *node.values()]
            elif isinstance(node, list | tuple | set | frozenset):
                kids = list(node)
            else:
                stack.pop()
                continue
            on_path.add(id(node))
            stack[-1] = (node, iter(kids))
            continue
        child = next(children, _END)
        if child is _END:
            on_path.discard(id(node))
            stack.pop()
        else:
            stack.append((child, None))
    return False


_END: Final = object()
