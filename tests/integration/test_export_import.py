"""The flight recorder through the real command line: ``agentdeck export`` of a real run (a python task that
remembers, a shell task that fails once and succeeds on its retry, a LangGraph graph) and ``agentdeck import`` into a
fresh ``surrealkv://`` database give the same ``workflows show``, ``checkpoints list``, graph history, events and
memories; a secret never reaches the file; bad files are exit 2 with one line and no traceback."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from db.models import Event, Task, TaskStatus, Workflow, WorkflowStatus
from engine.recorder.fileformat import read_recording, write_recording
from engine.recorder.model import VERSION, Recording
from tests.integration.test_cli_engine import WORKFLOWS, agentdeck, clean_env, json_lines

SECRET = "s3cr3t-recorder-value-7781"


def _json(*args: str, env: dict[str, str]) -> Any:
    done = agentdeck(*args, "--json", env=env)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return json.loads(done.stdout)


def test_an_exported_run_imported_into_a_fresh_database_reads_the_same(tmp_path: Path) -> None:
    env = clean_env(tmp_path, RECORDER_TOKEN=SECRET)
    here, there = f"surrealkv://{tmp_path / 'here.db'}", f"surrealkv://{tmp_path / 'there.db'}"
    ran = agentdeck(
        "run", str(WORKFLOWS / "recorder_roundtrip.yaml"), "--headless", "--json", "--db", here, env=env, timeout=240
    )
    assert ran.returncode == 0, ran.stderr
    events = json_lines(ran.stdout)
    workflow = events[0]["workflow"]
    assert any(e["type"] == "task.retrying" and e["task"] == "flaky" for e in events), "the shell task failed once"

    file = tmp_path / "run.agentdeck"
    exported = agentdeck("export", workflow, "-o", str(file), "--db", here, env=env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"wrote {file}: workflow {workflow} (completed), {len(events)} events")

    imported = agentdeck("import", str(file), "--db", there, env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == workflow

    original = _json("workflows", "show", workflow, "--db", here, env=env)
    copy = _json("workflows", "show", workflow, "--db", there, env=env)
    assert copy == original  # updated_at too: an import keeps the recorded one (the database stamps other writes)
    assert copy["status"] == "completed" and copy["resumable"] is False
    flaky = next(t for t in copy["tasks"] if t["key"] == "flaky")
    assert flaky["attempts"] == 2 and flaky["status"] == "completed"
    assert _json("checkpoints", "list", workflow, "--db", there, env=env) == _json(
        "checkpoints", "list", workflow, "--db", here, env=env
    )
    history = _json("workflows", "history", workflow, "--task", "plan", "--db", there, env=env)
    assert history == _json("workflows", "history", workflow, "--task", "plan", "--db", here, env=env)
    assert [h["step"] for h in history][-1] == -1 and history[0]["next"] == []
    listed = _json("workflows", "list", "--db", there, env=env)
    assert [(w["id"], w["status"]) for w in listed] == [(workflow, "completed")]
    hits = _json("memory", "search", "where is the parser", "--db", there, env=env)
    assert hits and hits[0]["content"] == "the parser lives in src/parse.py" and hits[0]["workflow"] == workflow

    # Every event, graph checkpoint and memory arrived: exporting the copy gives the same recording.
    again = tmp_path / "again.agentdeck"
    assert agentdeck("export", workflow, "-o", str(again), "--db", there, env=env).returncode == 0
    first, second = read_recording(file), read_recording(again)
    assert (
        [e.model_dump() for e in second.events]
        == [e.model_dump() for e in first.events]
        == [Event.model_validate(e).model_dump() for e in events]
    )
    for name in ("checkpoints", "graph_nodes", "graph_checkpoints", "memories", "metrics", "approvals"):
        assert getattr(second, name) == getattr(first, name), name
    assert first.graph_checkpoints and first.memories and len(first.checkpoints) >= 3

    # The secret was printed by the shell task, redacted, and appears nowhere in the file.
    content = gzip.decompress(file.read_bytes())
    assert SECRET.encode() not in content and SECRET not in ran.stdout
    assert b"token=***" in content

    twice = agentdeck("import", str(file), "--db", there, env=env)
    assert twice.returncode == 2
    assert twice.stderr.strip() == f"agentdeck: workflow {workflow} is already in {there}"


def _small_recording(status: WorkflowStatus = WorkflowStatus.COMPLETED) -> Recording:
    wf = Workflow(
        name="synthetic",
        status=status,
        owner="engine-on-another-host",
        lease_until=datetime.now(UTC) + timedelta(hours=1),
        spec={"name": "synthetic", "agents": {"sh": {"kind": "shell"}}, "tasks": [{"id": "t", "agent": "sh"}]},
    )
    task = Task(workflow=wf.id, key="t", agent="sh", status=TaskStatus.RUNNING, attempts=1)
    events = [
        Event(seq=n, type="task.output", workflow=wf.id, task="t", data={"lines": [f"l{n}"]}) for n in range(1, 400)
    ]
    return Recording(workflow=wf, tasks=[task], events=events)


def _assert_bad_input(done: Any, expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


def test_damaged_foreign_newer_or_missing_files_are_bad_input_with_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    there = f"surrealkv://{tmp_path / 'there.db'}"
    good = tmp_path / "good.agentdeck"
    write_recording(_small_recording(), good)
    data = good.read_bytes()

    cut = tmp_path / "cut.agentdeck"
    cut.write_bytes(data[: len(data) // 2])
    _assert_bad_input(agentdeck("import", str(cut), "--db", there, env=env), f"{cut}: truncated after ")

    flipped = tmp_path / "flipped.agentdeck"
    damaged = bytearray(data)
    for offset in range(len(data) // 2, len(data) // 2 + 8):
        damaged[offset] ^= 0xFF
    flipped.write_bytes(bytes(damaged))
    _assert_bad_input(agentdeck("import", str(flipped), "--db", there, env=env), f"{flipped}: corrupted")

    foreign = tmp_path / "workflow.yaml"
    foreign.write_text("name: not a recording\n")
    _assert_bad_input(agentdeck("import", str(foreign), "--db", there, env=env), "not an agentdeck recording")

    newer = tmp_path / "newer.agentdeck"
    lines = gzip.decompress(data).splitlines()
    header = json.loads(lines[0])
    header["version"] = VERSION + 1
    newer.write_bytes(gzip.compress(b"\n".join([json.dumps(header).encode(), *lines[1:]]) + b"\n"))
    _assert_bad_input(
        agentdeck("import", str(newer), "--db", there, env=env),
        f"format version {VERSION + 1} is newer than this agentdeck reads ({VERSION})",
    )

    missing = tmp_path / "missing.agentdeck"
    _assert_bad_input(agentdeck("import", str(missing), "--db", there, env=env), f"cannot read {missing}")

    # None of them left anything in the database; the good file still imports.
    imported = agentdeck("import", str(good), "--db", there, env=env)
    assert imported.returncode == 0, imported.stderr
    assert [w["status"] for w in _json("workflows", "list", "--db", there, env=env)] == ["completed"]

    unknown = agentdeck("export", "wf-nosuchthing", "-o", str(tmp_path / "x.agentdeck"), "--db", there, env=env)
    _assert_bad_input(unknown, "no workflow 'wf-nosuchthing'")
    nowhere = tmp_path / "no-such-folder" / "x.agentdeck"
    workflow = imported.stdout.strip()
    _assert_bad_input(
        agentdeck("export", workflow, "-o", str(nowhere), "--db", there, env=env), f"cannot write {nowhere}"
    )
    assert not nowhere.parent.exists()


def test_an_unfinished_workflow_arrives_stopped_and_resumable_never_owned_by_a_ghost(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    there = f"surrealkv://{tmp_path / 'there.db'}"
    file = tmp_path / "running.agentdeck"
    rec = _small_recording(WorkflowStatus.RUNNING)
    write_recording(rec, file)

    imported = agentdeck("import", str(file), "--db", there, env=env)
    assert imported.returncode == 0, imported.stderr
    assert "was running" in imported.stderr and "agentdeck resume" in imported.stderr
    shown = _json("workflows", "show", rec.workflow.id, "--db", there, env=env)
    assert shown["status"] == "stopped" and shown["resumable"] is True
    assert shown["owner"] is None and shown["lease_until"] is None
    assert [t["status"] for t in shown["tasks"]] == ["running"], "task rows are kept as they were recorded"

    # Exporting a workflow that has not finished says so, and writes what is stored.
    again = tmp_path / "again.agentdeck"
    exported = agentdeck("export", rec.workflow.id, "-o", str(again), "--db", there, env=env)
    assert exported.returncode == 0, exported.stderr
    assert "is stopped (not finished)" in exported.stderr and "events up to seq 399" in exported.stderr
    assert len(read_recording(again).events) == 399


async def test_graph_threads_are_copied_by_workflow_prefix_and_read_back_the_same(tmp_path: Path) -> None:
    """``db.graph_rows``: the rows of one workflow's threads (``wf:task``, ``wf:task#2``) and no other's
    (``wf-ab`` starts like ``wf-a``), written into another database, give LangGraph the same history there."""
    from db import connect
    from db.checkpointer import SurrealSaver
    from db.graph_rows import read_thread_rows, write_thread_rows
    from tests.integration.workflows.graphs import linear

    threads = ["wf-a:plan", "wf-a:plan#2", "wf-ab:plan", "wf-b:plan"]
    async with connect("mem://") as here, connect(f"surrealkv://{tmp_path / 'there.db'}") as there:
        graph = linear.builder.compile(checkpointer=SurrealSaver(here))
        for thread in threads:
            await graph.ainvoke({"topic": thread}, {"configurable": {"thread_id": thread}})
        rows = await read_thread_rows(here, "wf-a:")
        assert {row["thread_id"] for row in rows} == {"wf-a:plan", "wf-a:plan#2"}
        assert {row["table"] for row in rows} == {"lg_checkpoint", "lg_write"}
        await write_thread_rows(there, rows)
        await write_thread_rows(there, rows)  # a second import of the same rows keeps one of each
        assert await read_thread_rows(there, "wf-a:") == rows
        copy = linear.builder.compile(checkpointer=SurrealSaver(there))
        for thread in ("wf-a:plan", "wf-a:plan#2"):
            config: Any = {"configurable": {"thread_id": thread}}
            original = [s async for s in graph.aget_state_history(config)]
            copied = [s async for s in copy.aget_state_history(config)]
            assert [(s.values, s.next, s.config, s.metadata) for s in copied] == [
                (s.values, s.next, s.config, s.metadata) for s in original
            ]
            assert copied[0].values["log"] == ["plan", "write", "check", "report"]
        assert await read_thread_rows(there, "wf-b:") == []
