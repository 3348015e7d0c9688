"""``agentdeck workflows diverge ID --at SEQ``: a new workflow from a moment of a finished one, run in the
foreground when no engine holds the database; what had completed by then never runs again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_engine import WORKFLOWS, agentdeck, clean_env, json_lines


def test_diverge_from_a_finished_run_reruns_only_what_came_after_the_moment(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    db, log = f"surrealkv://{tmp_path / 'state.db'}", tmp_path / "side-effects.log"
    ran = agentdeck("run", str(WORKFLOWS / "cli_chain.yaml"), "--headless", "--json", "--var", f"log={log}",
                    "--db", db, env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    events = json_lines(ran.stdout)
    source = events[0]["workflow"]
    at = next(e["seq"] for e in events if e["type"] == "task.completed" and e["task"] == "b")
    assert log.read_text().split() == ["a", "b", "c", "d"]

    diverged = agentdeck("workflows", "diverge", source, "--at", str(at), "--json", "--db", db, env=env)
    assert diverged.returncode == 0, diverged.stderr
    new_events = json_lines(diverged.stdout)  # --json: the new workflow's events, and nothing else, on stdout
    new_id = new_events[0]["workflow"]
    assert new_id != source and new_id in diverged.stderr
    assert new_events[0]["type"] == "workflow.created"
    assert new_events[0]["data"]["diverged_from"]["workflow"] == source
    started = [e["task"] for e in new_events if e["type"] == "task.started"]
    assert started == ["c", "d"], "a and b had completed by that moment: they are carried, not run"
    assert log.read_text().split() == ["a", "b", "c", "d", "c", "d"]

    shown = json.loads(agentdeck("workflows", "show", new_id, "--json", "--db", db, env=env).stdout)
    assert shown["status"] == "completed" and shown["diverged_from"]["seq"] == at
    assert {t["key"]: t["output"] for t in shown["tasks"]}["a"] == {"wrote": "a"}  # carried with its output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--at", "5", "--set", "topic=x"], "expected TASK.KEY=VALUE"),
        (["--at", "0"], "--at"),
    ],
)
def test_bad_diverge_requests_exit_2_with_a_clear_message(tmp_path: Path, args: list[str], said: str) -> None:
    result = agentdeck("workflows", "diverge", "wf-whatever", *args, "--db", "mem://", env=clean_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr


def test_diverge_of_an_unknown_workflow_is_exit_2(tmp_path: Path) -> None:
    db = f"surrealkv://{tmp_path / 'state.db'}"
    result = agentdeck("workflows", "diverge", "wf-does-not-exist", "--at", "3", "--db", db, env=clean_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "wf-does-not-exist" in result.stderr and "Traceback" not in result.stderr
