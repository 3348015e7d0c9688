"""Translation between pydantic records and SurrealDB rows (record ids, NONE for cleared fields)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel
from surrealdb import Null, NullType, RecordID

M = TypeVar("M", bound=BaseModel)


def rid(table: str, key: str) -> RecordID:
    return RecordID(table, key)


def plain(value: Any) -> Any:
    """Turn enums into their values, recursively, so the CBOR encoder sees plain types.

    A ``None`` nested in a dict or list becomes SurrealDB ``NULL``: the SDK sends Python ``None`` as
    ``NONE``, and ``NONE`` inside an object deletes the key, so ``{"answer": None}`` would come back ``{}``.
    """
    t = type(value)
    if t is str or t is int or t is float or t is bool or t is datetime:  # most values: no isinstance chain
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _nested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nested(v) for v in value]
    return value


def _nested(value: Any) -> Any:
    t = type(value)
    if t is str or t is int or t is float or t is bool:  # the common case first: no call, no isinstance
        return value
    return Null if value is None else plain(value)


def unnull(value: Any) -> Any:
    """The inverse of ``plain`` for reads: SurrealDB ``NULL`` back to ``None``, recursively."""
    if isinstance(value, NullType):
        return None
    if isinstance(value, dict):
        return {k: unnull(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unnull(v) for v in value]
    return value


def to_row(model: BaseModel, table: str, key: str, drop: Iterable[str] = ("id",)) -> dict[str, Any]:
    """A record ready for INSERT/UPSERT: ``id`` becomes a record id, ``None`` fields are left out."""
    data = {k: plain(v) for k, v in model.model_dump().items() if v is not None and k not in set(drop)}
    data["id"] = rid(table, key)
    return data


def set_clause(model: type[BaseModel], changes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``SET a = $patch.a, ...`` for an update, and its parameters.

    SET replaces a field whole (MERGE would merge nested objects key by key, so a task's new output would keep
    the old output's keys). A top-level ``None`` is sent as ``NONE``, which clears an optional field.
    """
    unknown = set(changes) - set(model.model_fields)
    if unknown or "id" in changes:
        raise ValueError(f"cannot update {model.__name__} fields {sorted(unknown | ({'id'} & set(changes)))}")
    patch = {k: (None if v is None else plain(v)) for k, v in changes.items()}
    return ", ".join(f"{k} = $patch.{k}" for k in patch), {"patch": patch}


def from_row(model: type[M], row: dict[str, Any], keep_id: bool = True) -> M:
    """A typed record from a row; the record id becomes a plain string ``id``."""
    data = unnull(dict(row))
    record_id = data.pop("id", None)
    if keep_id and isinstance(record_id, RecordID):
        data["id"] = str(record_id.id)
    return model.model_validate(data)


def from_rows(model: type[M], rows: Any, keep_id: bool = True) -> list[M]:
    return [from_row(model, row, keep_id) for row in rows or []]
