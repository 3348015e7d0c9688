"""The ``.agentdeck`` flight-recording file: ``write_recording`` and ``read_recording`` (the format is documented in
docs/recording-format.md).

A recording is one gzip stream of JSON lines: a header (format, version, who wrote it and when, the workflow, counts
per kind), one line per stored row (``{"kind": "event", "row": {...}}``), and an end record repeating the counts
with a SHA-256 of every byte before it. gzip is in the standard library (``zstandard`` is only a transitive
dependency here); its CRC catches damage in the compressed bytes, the end record catches a file cut at a line
boundary or edited. Rows are the stores' pydantic models in their JSON form (``model_dump(mode="json")``: ISO 8601
datetimes, UTC as ``Z``), so a row reads back with ``model_validate``; vectors and LangGraph's serialized blobs,
which JSON cannot hold, are base64.

Every problem with a file is a ``RecordingError`` whose message says what is wrong and where; files are written
through a temporary file renamed into place, so a failed export leaves no half file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import itertools
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from db.models import Approval, Checkpoint, Event, GraphNode, Memory, Metric, Task, Workflow
from engine.recorder.model import FORMAT, VERSION, Recording

__all__ = ["RecordingError", "read_recording", "write_recording"]

#: The kinds of row a file holds, in the order they are written (the workflow first, events after what they
#: refer to), and the model each row validates as (``graph_checkpoint`` rows are plain dicts).
KINDS = ("workflow", "task", "checkpoint", "graph_node", "graph_checkpoint", "approval", "memory", "metric", "event")
_END = "end"
_GZIP_MAGIC = b"\x1f\x8b"
# Compression level: 6 (zlib's default) wrote a 100k-event file in ~1.3 s here; 9 saved ~3% for twice the time.
_LEVEL = 6


class RecordingError(ValueError):
    """A file is not a recording this agentdeck can read: not one at all, damaged, cut short, or too new.
    The message names the file and what is wrong where (``run.agentdeck: truncated after 1234 records``)."""


# -- writing ----------------------------------------------------------------------------------------------------


def agentdeck_version() -> str | None:
    try:
        return metadata.version("agentdeck")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return None


def write_recording(rec: Recording, path: str | os.PathLike[str]) -> dict[str, int]:
    """Write ``rec`` to ``path`` (replacing it) and return the count of rows of each kind.

    The file appears whole or not at all: it is written to a temporary file in the same folder, flushed to disk
    and renamed over ``path``. Raises ``OSError`` when the folder cannot be written.
    """
    target = Path(path)
    exported_at = rec.exported_at or datetime.now(UTC)
    version = rec.agentdeck_version or agentdeck_version()
    rows = _rows_by_kind(rec)
    counts = {kind: len(rows[kind]) for kind in KINDS}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "agentdeck": version,
        "exported_at": exported_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "workflow": rec.workflow.id,
        "counts": counts,
    }
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_LEVEL, mtime=0) as out:
                digest = hashlib.sha256()
                lines = 0

                def put(value: dict[str, Any]) -> None:
                    nonlocal lines
                    line = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                    digest.update(line)
                    out.write(line)
                    lines += 1

                put(header)
                for kind in KINDS:
                    for row in rows[kind]:
                        put({"kind": kind, "row": row})
                end = {"kind": _END, "records": lines - 1, "counts": counts, "sha256": digest.hexdigest()}
                out.write(json.dumps(end, separators=(",", ":")).encode() + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return counts


def _rows_by_kind(rec: Recording) -> dict[str, list[dict[str, Any]]]:
    def dump(models: list[Any]) -> list[dict[str, Any]]:
        return [m.model_dump(mode="json") for m in models]

    return {
        "workflow": dump([rec.workflow]),
        "task": dump(rec.tasks),
        "checkpoint": dump(rec.checkpoints),
        "graph_node": dump(rec.graph_nodes),
        "graph_checkpoint": [_tagged(row) for row in rec.graph_checkpoints],
        "approval": dump(rec.approvals),
        "memory": [_memory_row(m) for m in rec.memories],
        "metric": dump(rec.metrics),
        "event": dump(sorted(rec.events, key=lambda e: e.seq)),
    }


def _memory_row(memory: Memory) -> dict[str, Any]:
    # 384 floats as JSON text are ~8 KB a memory; as little-endian float32 (what the store keeps) ~2 KB of base64.
    row = memory.model_dump(mode="json", exclude={"embedding"})
    row["embedding_f32"] = base64.b64encode(np.asarray(memory.embedding, dtype="<f4").tobytes()).decode()
    return row


def _tagged(value: Any) -> Any:
    """JSON for a LangGraph checkpointer row: bytes as ``{"$bytes": base64}``, datetimes as ``{"$datetime": iso}``."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _tagged(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tagged(v) for v in value]
    return value


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            if "$bytes" in value:
                return base64.b64decode(value["$bytes"], validate=True)
            if "$datetime" in value:
                return datetime.fromisoformat(value["$datetime"])
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


# -- reading ----------------------------------------------------------------------------------------------------


def _memory_row_in(row: dict[str, Any]) -> dict[str, Any]:
    packed = row.pop("embedding_f32", None)
    if packed is not None:
        row["embedding"] = np.frombuffer(base64.b64decode(packed, validate=True), dtype="<f4").tolist()
    return row


#: How each kind's rows become models: validated in bulk, a list per kind (twice as fast as a row at a time, which
#: matters for a 100k-event file). ``graph_checkpoint`` rows stay dicts.
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "workflow": TypeAdapter(list[Workflow]),
    "task": TypeAdapter(list[Task]),
    "checkpoint": TypeAdapter(list[Checkpoint]),
    "graph_node": TypeAdapter(list[GraphNode]),
    "approval": TypeAdapter(list[Approval]),
    "memory": TypeAdapter(list[Memory]),
    "metric": TypeAdapter(list[Metric]),
    "event": TypeAdapter(list[Event]),
}
#: Rows whose JSON form differs from the model's: turned back before validation.
_BEFORE: dict[str, Callable[[Any], Any]] = {"graph_checkpoint": _untagged, "memory": _memory_row_in}


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a recording file back. Events come sorted by ``seq``.

    Raises:
        RecordingError: the file is not a recording, is damaged or cut short, or was written by a newer format
            version; the message says which, and where.
        OSError: the file cannot be opened (missing, unreadable).
    """
    where = str(path)
    with open(path, "rb") as raw:
        if raw.read(2) != _GZIP_MAGIC:
            raise RecordingError(f"{where}: not an agentdeck recording (not a gzip-compressed file)")
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            return _parse(where, _lines(where, stream))


def _lines(where: str, stream: gzip.GzipFile) -> Iterator[tuple[int, bytes]]:
    """(index, line) pairs from the decompressed stream; damage in the compressed bytes becomes a RecordingError
    that says how many lines read well before it."""
    index = 0
    try:
        for line in stream:
            yield index, line
            index += 1
    except EOFError:
        raise RecordingError(f"{where}: truncated after {max(index - 1, 0)} records (the file was cut short)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise RecordingError(f"{where}: corrupted at record {max(index - 1, 0) + 1}: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _header(where: str, line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecordingError(f"{where}: not an agentdeck recording (no {FORMAT} header)")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordingError(f"{where}: corrupted header: format version {version!r} is not a positive integer")
    if version > VERSION:
        raise RecordingError(
            f"{where}: format version {version} is newer than this agentdeck reads ({VERSION}); "
            f"upgrade agentdeck to read it"
        )
    return header


def _parse(where: str, lines: Iterator[tuple[int, bytes]]) -> Recording:
    digest = hashlib.sha256()
    first = next(lines, None)
    if first is None:
        raise RecordingError(f"{where}: not an agentdeck recording (empty)")
    header = _header(where, first[1])
    digest.update(first[1])
    rows: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    at: dict[str, list[int]] = {kind: [] for kind in KINDS}  # the record number of each row, for messages
    end: dict[str, Any] | None = None
    records = 0
    for index, line in lines:
        if end is not None:
            raise RecordingError(f"{where}: corrupted: data after the end record (record {index})")
        try:
            entry = from_json(line)  # pydantic-core's parser: half the time of json.loads on event lines
        except ValueError as exc:  # UnicodeDecodeError is one
            raise RecordingError(f"{where}: corrupted at record {index}: {_short(exc)}") from None
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind == _END:
            end = entry
            continue
        if not isinstance(kind, str) or kind not in rows or "row" not in entry:
            what = f"unknown kind {kind!r}" if isinstance(kind, str) else "not a record"
            raise RecordingError(f"{where}: corrupted at record {index}: {what}")
        before = _BEFORE.get(kind)
        try:
            rows[kind].append(before(entry["row"]) if before else entry["row"])
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            raise RecordingError(f"{where}: corrupted at record {index}: {kind}: {_short(exc)}") from None
        at[kind].append(index)
        digest.update(line)
        records += 1
    if end is None:
        raise RecordingError(f"{where}: truncated after {records} records (no end record)")
    if end.get("records") != records or end.get("sha256") != digest.hexdigest():
        raise RecordingError(
            f"{where}: corrupted: the end record says {end.get('records')} records and a checksum the "
            f"{records} records read do not match"
        )
    found: dict[str, list[Any]] = {"graph_checkpoint": rows["graph_checkpoint"]}
    for kind, adapter in _ADAPTERS.items():
        try:
            found[kind] = adapter.validate_python(rows[kind])
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = error.get("loc") or (0,)
            record = at[kind][loc[0]] if isinstance(loc[0], int) and loc[0] < len(at[kind]) else "?"
            field = ".".join(str(part) for part in loc[1:])
            raise RecordingError(
                f"{where}: corrupted at record {record}: {kind} {field}: {error.get('msg', 'invalid')}"
            ) from None
    if len(found["workflow"]) != 1:
        raise RecordingError(f"{where}: corrupted: {len(found['workflow'])} workflow rows (expected one)")
    workflow: Workflow = found["workflow"][0]
    events: list[Event] = found["event"]
    if any(a.seq > b.seq for a, b in itertools.pairwise(events)):
        events.sort(key=lambda e: e.seq)
    exported = header.get("exported_at")
    return Recording(
        workflow=workflow,
        tasks=found["task"],
        events=events,
        checkpoints=found["checkpoint"],
        graph_nodes=found["graph_node"],
        graph_checkpoints=found["graph_checkpoint"],
        memories=found["memory"],
        metrics=found["metric"],
        approvals=found["approval"],
        exported_at=_datetime(exported),
        agentdeck_version=header.get("agentdeck") if isinstance(header.get("agentdeck"), str) else None,
    )


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
