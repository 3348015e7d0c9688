"""Decoding the embedded engine's CBOR replies with cbor2 into exactly the values the SDK's decoder returns.

The decoding half of db/_cbor.py (see there). cbor2 reads both a plain null (SurrealDB NULL) and tag 6 over null
(NONE) as ``None``; tag 6 decodes to a marker here, and ``_fix`` then turns each ``None`` into ``Null`` and each
marker into ``None``, as the SDK spells them. SurrealDB's tags become the SDK's types: the frequent ones (record
ids, datetimes, UUIDs) through decoders written out below, the rest through the SDK's own ``tag_decoder``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import cbor2
from surrealdb import Null, PreciseDatetime, RecordID
from surrealdb.cbor import CBORDecodeValueError, CBORTag
from surrealdb.data.cbor import tag_decoder as sdk_tag_decoder
from surrealdb.errors import UnexpectedResponseError

__all__ = ["decode"]

_UTC: Final = UTC


class _NoneMarker:
    """What tag 6 (NONE) decodes to until ``_fix`` replaces it with ``None``; a plain null becomes ``Null``."""

    __slots__ = ()


_NONE: Final = _NoneMarker()


def decode(data: bytes) -> Any:
    """``surrealdb.data.cbor.decode(data)``: the same values (``None`` for NONE, ``Null`` for NULL, SDK types)."""
    try:
        # max_depth: cbor2 stops at 400 levels by default; the SDK's recursive decoder reads about 490.
        value = cbor2.loads(data, semantic_decoders=_SEMANTIC, tag_hook=_unknown_tag, max_depth=1000)
    except cbor2.CBORDecodeError as exc:
        # cbor2 wraps what a tag decoder raised; the SDK's decoder lets it through (an unknown tag is its
        # UnexpectedResponseError, a SurrealError). Malformed CBOR becomes the SDK's decode error type.
        raised = _raised_by_tag_decoder(exc)
        if raised is None:
            raise CBORDecodeValueError(str(exc)) from exc
    else:
        return _fixed(value)
    raise raised


def _raised_by_tag_decoder(exc: BaseException) -> BaseException | None:
    cause = exc.__cause__
    while isinstance(cause, cbor2.CBORDecodeError):
        cause = cause.__cause__
    return cause


def _fixed(value: Any) -> Any:
    """``value`` with null and NONE spelled as the SDK spells them; lists and dicts are fixed in place."""
    if value is None:
        return Null
    if value is _NONE:
        return None
    if type(value) is dict or type(value) is list:
        _fix(value)
    return value


def _fix(c: Any) -> None:  # a dict or a list
    """The pass over every decoded value, so it is kept lean: values only, since SurrealDB's objects have string
    keys and nothing else (a map with a null key would keep ``None`` there, where the SDK has ``Null``)."""
    if type(c) is list:
        for i, v in enumerate(c):
            if v is None:
                c[i] = Null
            elif v is _NONE:
                c[i] = None
            elif (t := type(v)) is dict or t is list:
                _fix(v)
        return
    for k, v in c.items():  # assigning to existing keys while iterating is allowed: the size does not change
        if v is None:
            c[k] = Null
        elif v is _NONE:
            c[k] = None
        elif (t := type(v)) is dict or t is list:
            _fix(v)


def _none(value: Any, immutable: bool) -> _NoneMarker:
    if value is not None:
        raise CBORDecodeValueError("invalid None value " + str(value))
    return _NONE


def _record_id(value: Any, immutable: bool) -> RecordID:
    return RecordID._unchecked(_fixed(value[0]), _fixed(value[1]))


def _datetime_compact(value: Any, immutable: bool) -> PreciseDatetime:
    """``PreciseDatetime.from_seconds_and_nanos`` (what the SDK returns), built in a third of its time.

    The SDK builds the moment, then passes its seven fields through ``PreciseDatetime``'s Python ``__new__``.
    Here the moment's pickle state (``__reduce__``, the constructor form ``datetime`` itself unpickles with) goes
    to ``datetime.__new__`` directly: a datetime is read once per row, so this is most of a row's decoding.
    """
    seconds = value[0] if value else 0
    nanoseconds = value[1] if len(value) > 1 else 0
    micro, nano = divmod(nanoseconds, 1000)
    moment = datetime.fromtimestamp(seconds, _UTC) + timedelta(microseconds=micro)
    result: PreciseDatetime = _datetime_new(PreciseDatetime, *moment.__reduce__()[1])
    object.__setattr__(result, "nanosecond", nano)
    return result


_datetime_new: Final = datetime.__new__


def _uuid(value: Any, immutable: bool) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=value)
    except (TypeError, ValueError) as exc:
        raise CBORDecodeValueError("error decoding UUID value") from exc


_TIMESTAMP_RE: Final = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6})\d*)?(?:Z|([+-])(\d\d):(\d\d))$"
)


def _datetime_string(value: Any, immutable: bool) -> datetime:
    """Tag 0 read as the SDK's bundled decoder reads it (fraction cut to microseconds, "Z" or an offset)."""
    match = _TIMESTAMP_RE.match(value)
    if not match:
        raise CBORDecodeValueError(f"invalid datetime string: {value!r}")
    year, month, day, hour, minute, second, secfrac, sign, offset_h, offset_m = match.groups()
    microsecond = 0 if secfrac is None else int(f"{secfrac:<06}")
    tz = _UTC
    if offset_h:
        factor = -1 if sign == "-" else 1
        tz = timezone(timedelta(hours=int(offset_h) * factor, minutes=int(offset_m) * factor))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond, tz)


def _by_sdk(number: int) -> Callable[[Any, bool], Any]:
    """The SDK's own ``tag_decoder`` for a SurrealDB tag, after the value's nulls are fixed."""
    return lambda value, immutable: sdk_tag_decoder(None, CBORTag(number, _fixed(value)))  # type: ignore[arg-type]


def _not_sdk(number: int) -> Callable[[Any, bool], Any]:
    """A tag cbor2 knows but the SDK does not: the SDK's error rather than a value it never returns."""

    def refuse(value: Any, immutable: bool) -> Any:
        raise _no_decoder(number)

    return refuse


def _no_decoder(number: int) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"no decoder for CBOR tag {number}; the server sent a value this version of the SDK does not understand"
    )


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    raise _no_decoder(tag.tag)


# Tags read in Python. The hot ones (NONE, record ids, datetimes, UUIDs) are written out; the SDK's other tags go
# to its own decoder. Tags both cbor2 and the SDK's bundled cbor2 know (bignums, ...) stay with cbor2.
_SEMANTIC: Final[dict[int, Callable[[Any, bool], Any]]] = {
    0: _datetime_string,
    6: _none,
    8: _record_id,
    12: _datetime_compact,
    37: _uuid,
    **{n: _by_sdk(n) for n in (7, 9, 10, 13, 14, 49, 50, 51, 55, 56, 88, 89, 90, 91, 92, 93, 94)},
    **{n: _not_sdk(n) for n in (52, 54, 43000)},
}
