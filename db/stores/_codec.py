"""Translation between pydantic records and SurrealDB rows (record ids, NONE for cleared fields)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel
from surrealdb import RecordID

M = TypeVar("M", bound=BaseModel)


def rid(table: str, key: str) -> RecordID:
    return RecordID(table, key)


def plain(value: Any) -> Any:
    """Turn enums into their values, recursively, so the CBOR encoder sees plain types."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_row(model: BaseModel, table: str, key: str, drop: Iterable[str] = ("id",)) -> dict[str, Any]:
    """A record ready for INSERT/UPSERT: ``id`` becomes a record id, ``None`` fields are left out."""
    data = {k: plain(v) for k, v in model.model_dump().items() if v is not None and k not in set(drop)}
    data["id"] = rid(table, key)
    return data


def changes_row(changes: dict[str, Any]) -> dict[str, Any]:
    """A MERGE patch: enums flattened; ``None`` stays, which SurrealDB's MERGE treats as 'remove field'."""
    return {k: plain(v) for k, v in changes.items()}


def from_row(model: type[M], row: dict[str, Any], keep_id: bool = True) -> M:
    """A typed record from a row; the record id becomes a plain string ``id``."""
    data = dict(row)
    record_id = data.pop("id", None)
    if keep_id and isinstance(record_id, RecordID):
        data["id"] = str(record_id.id)
    return model.model_validate(data)


def from_rows(model: type[M], rows: Any, keep_id: bool = True) -> list[M]:
    return [from_row(model, row, keep_id) for row in rows or []]
