"""On a server database there is no socket to share: `agentdeck workflows pause|resume|cancel` reach the engine
that runs the workflow in another process through control requests in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

AGENTDECK = str(Path(sys.executable).parent / "agentdeck")
COUNTER = """
name: counted
agents:
  sh: {kind: shell}
tasks:
  - id: count
    agent: sh
    run: "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo $i; sleep 0.05; done"
"""


def events(stream: IO[str]) -> Iterator[dict[str, object]]:
    for line in stream:
        yield json.loads(line)


def test_pause_resume_cancel_through_a_server_database(
    surreal_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **os.environ,
        "AGENTDECK_DB": surreal_server_url,
        "AGENTDECK_DB_NAMESPACE": f"ctl_{uuid.uuid4().hex[:8]}",
        "AGENTDECK_DB_USER": "root",
        "AGENTDECK_DB_PASS": "root",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(COUNTER)
    runner = subprocess.Popen(
        [AGENTDECK, "run", str(workflow), "--headless", "--json"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert runner.stdout is not None
        stream = events(runner.stdout)
        created = next(stream)
        assert created["type"] == "workflow.created"
        wf = str(created["workflow"])
        for event in stream:
            if event["type"] == "task.output" and "3" in event["data"]["lines"]:  # type: ignore[index]
                break

        def control(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [AGENTDECK, "workflows", *args, wf], env=env, capture_output=True, text=True, timeout=60
            )

        paused = control("pause")
        assert paused.returncode == 0, paused.stderr
        assert f"paused {wf}" in paused.stdout
        seen = [event["type"] for event in _until(stream, "workflow.paused")]
        assert "task.paused" in seen
        resumed = control("resume")
        assert resumed.returncode == 0, resumed.stderr
        list(_until(stream, "workflow.resumed"))
        cancelled = control("cancel")
        assert cancelled.returncode == 0, cancelled.stderr
        list(_until(stream, "workflow.cancelled"))
        assert runner.wait(timeout=60) == 1
        again = control("pause")
        assert again.returncode == 2 and "not running" in again.stderr
    finally:
        if runner.poll() is None:
            runner.kill()


def _until(stream: Iterator[dict[str, object]], kind: str) -> Iterator[dict[str, object]]:
    for event in stream:
        yield event
        if event["type"] == kind:
            return
    raise AssertionError(f"the run ended before {kind}")
