"""The ``.agentdeck`` recording file on its own (no database): what is written reads back the same, and every kind of
damage — a foreign file, a cut, flipped bytes, an edited or invalid record, a newer version — is a one-line
``RecordingError`` that says what is wrong and where, while a failed write leaves no file behind."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from db.models import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    Event,
    GraphNode,
    Memory,
    Metric,
    Task,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)
from engine.recorder.fileformat import RecordingError, read_recording, write_recording
from engine.recorder.model import FORMAT, VERSION, Recording

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def recording(events: int = 40) -> Recording:
    wf = Workflow(id="wf-0123456789ab", name="demo", status=WorkflowStatus.COMPLETED, spec={"name": "demo"})
    return Recording(
        workflow=wf,
        tasks=[
            Task(workflow=wf.id, key="build", agent="sh", status=TaskStatus.COMPLETED, output={"ok": True}),
            Task(workflow=wf.id, key="plan", agent="g", status=TaskStatus.COMPLETED, thread=f"{wf.id}:plan"),
        ],
        # written out of order on purpose: a reader gets them by seq
        events=[
            Event(
                seq=n,
                ts=T0 + timedelta(seconds=n),
                type="task.output",
                workflow=wf.id,
                task="build",
                agent="sh",
                data={"stream": "stdout", "lines": [f"line {n}", "é ✓"]},
            )
            for n in reversed(range(1, events + 1))
        ],
        checkpoints=[Checkpoint(workflow=wf.id, number=1, reason="task build completed", task_states={"a": 1})],
        graph_nodes=[GraphNode(id=f"{wf.id}/plan/x", workflow=wf.id, task="plan", thread="t", node="write")],
        graph_checkpoints=[
            {
                "table": "lg_checkpoint",
                "thread_id": f"{wf.id}:plan",
                "checkpoint_ns": "",
                "checkpoint_id": "1f0",
                "parent_checkpoint_id": None,
                "type": "msgpack",
                "checkpoint": bytes(range(256)),
                "metadata": {"step": 1, "source": "loop"},
            }
        ],
        memories=[Memory(agent="mem", content="the parser lives in src/parse.py", embedding=[0.25, -1.5, 3.0])],
        metrics=[Metric(name="task.duration_s", value=1.5, workflow=wf.id, ts=T0)],
        approvals=[Approval(workflow=wf.id, task="plan", interrupt="i1", status=ApprovalStatus.GRANTED, value=True)],
    )


def test_what_is_written_reads_back_the_same_with_events_by_seq(tmp_path: Path) -> None:
    rec = recording()
    path = tmp_path / "run.agentdeck"
    counts = write_recording(rec, path)
    assert counts["event"] == 40 and counts["graph_checkpoint"] == 1 and counts["memory"] == 1
    back = read_recording(path)
    assert [e.seq for e in back.events] == list(range(1, 41))
    assert back.events == sorted(rec.events, key=lambda e: e.seq)
    for name in ("tasks", "checkpoints", "graph_nodes", "graph_checkpoints", "memories", "metrics", "approvals"):
        assert getattr(back, name) == getattr(rec, name), name
    assert back.workflow == rec.workflow
    assert back.graph_checkpoints[0]["checkpoint"] == bytes(range(256))
    assert back.exported_at is not None and back.agentdeck_version
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left next to it"


def test_the_file_is_compressed_json_lines_with_a_header_first_and_an_end_record_last(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == FORMAT and header["version"] == VERSION and header["workflow"] == "wf-0123456789ab"
    assert header["counts"]["event"] == 40
    assert end["kind"] == "end" and end["records"] == len(lines) - 2
    assert end["sha256"] == hashlib.sha256(b"".join(line + b"\n" for line in lines[:-1])).hexdigest()


def _rewrite(path: Path, lines: list[bytes], *, fix_checksum: bool = True) -> None:
    """Write ``lines`` (header and records, no end record) with an end record whose checksum matches them."""
    body = b"".join(line + b"\n" for line in lines)
    end = {"kind": "end", "records": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest() if fix_checksum else ""}
    path.write_bytes(gzip.compress(body + json.dumps(end).encode() + b"\n"))


def _error(path: Path) -> str:
    with pytest.raises(RecordingError) as caught:
        read_recording(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_file_cut_in_the_middle_says_it_was_truncated_and_after_how_many_records(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(events=3000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert "truncated after" in message and "records" in message
    records = int(message.split("truncated after ")[1].split()[0])
    assert 0 < records < 3000 + 8


def test_a_file_cut_at_a_record_boundary_misses_its_end_record(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines[:20])))
    assert _error(path) == f"{path}: truncated after 19 records (no end record)"


def test_flipped_bytes_are_reported_as_corruption(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(events=3000), path)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 16):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    assert "corrupted" in _error(path)


def test_an_edited_record_fails_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    text = gzip.decompress(path.read_bytes()).replace(b"line 7", b"line X")
    path.write_bytes(gzip.compress(text))
    assert "checksum" in _error(path)


def test_an_invalid_record_names_its_number_and_field(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    lines = gzip.decompress(path.read_bytes()).splitlines()[:-1]
    number = next(i for i, line in enumerate(lines) if b'"kind":"event"' in line)
    record = json.loads(lines[number])
    record["row"]["seq"] = "seventeen"
    lines[number] = json.dumps(record).encode()
    _rewrite(path, lines)
    message = _error(path)
    assert f"corrupted at record {number}: event seq:" in message


def test_a_line_that_is_not_json_names_its_record(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    lines = gzip.decompress(path.read_bytes()).splitlines()[:-1]
    lines[5] = b'{"kind": "event", "row": {'
    _rewrite(path, lines)
    assert f"{path}: corrupted at record 5: " in _error(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"name: not a recording\n", "not an agentdeck recording (not a gzip-compressed file)"),
        (b"", "not an agentdeck recording (not a gzip-compressed file)"),
        (gzip.compress(b'{"some": "json"}\n'), "not an agentdeck recording (no agentdeck-recording header)"),
        (gzip.compress(b"plain text\n"), "not an agentdeck recording (no agentdeck-recording header)"),
    ],
)
def test_a_file_that_is_no_recording_says_so(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "other.agentdeck"
    path.write_bytes(content)
    assert _error(path) == f"{path}: {expected}"


def test_a_newer_format_version_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(), path)
    lines = gzip.decompress(path.read_bytes()).splitlines()[:-1]
    header: dict[str, Any] = json.loads(lines[0])
    header["version"] = VERSION + 2
    lines[0] = json.dumps(header).encode()
    _rewrite(path, lines)
    message = _error(path)
    assert f"format version {VERSION + 2} is newer than this agentdeck reads ({VERSION})" in message


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "run.agentdeck"
    write_recording(recording(events=5), path)
    before = path.read_bytes()
    broken = recording()
    broken.graph_checkpoints[0]["metadata"] = {"not json": object()}  # the encoder fails half way through the file
    with pytest.raises(TypeError):
        write_recording(broken, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(OSError):
        write_recording(recording(), tmp_path / "missing-folder" / "run.agentdeck")


def test_export_scrubs_the_values_of_the_workflows_secret_variables_wherever_they_appear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.recorder.collect import scrub_secrets, secret_names

    monkeypatch.setenv("DEPLOY_TOKEN", "tok-9f8e7d6c")
    monkeypatch.setenv("UNRELATED", "tok-9f8e7d6c-not-a-secret-of-this-workflow")
    rec = recording(events=3)
    rec.workflow.spec = {"tasks": [{"id": "build", "agent": "sh", "secrets": ["DEPLOY_TOKEN"]}]}
    rec.tasks[0].output = {"said": "using tok-9f8e7d6c now", "n": 3}
    rec.events[0].data = {"stream": "stdout", "lines": ["auth tok-9f8e7d6c"]}
    assert secret_names(rec) == {"DEPLOY_TOKEN"}
    untouched = rec.events[1]
    clean = scrub_secrets(rec, secret_names(rec))
    assert clean.tasks[0].output == {"said": "using *** now", "n": 3}
    assert clean.events[0].data["lines"] == ["auth ***"]
    assert "tok-9f8e7d6c" not in json.dumps([e.model_dump(mode="json") for e in clean.events])
    assert clean.events[1] is untouched, "rows without the secret are left as they were"
