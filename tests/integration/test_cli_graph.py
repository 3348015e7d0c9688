"""Graph agents through the real command line: a headless run stops for an approval and a second terminal
answers it with ``agentdeck workflows approve``; history and fork (time travel) from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli_engine import WORKFLOWS, RunningWorkflow, agentdeck, clean_env


def test_a_headless_run_is_answered_from_a_second_terminal_then_forked(tmp_path: Path) -> None:
    env = clean_env(tmp_path, AGENTDECK_DB=f"surrealkv://{tmp_path / 'state.db'}")
    run = RunningWorkflow(
        ["run", str(WORKFLOWS / "cli_graph_approval.yaml"), "--headless", "--json"], env, tmp_path / "run.stderr"
    )
    try:
        asked = run.wait_for(lambda e: e["type"] == "approval.requested", "approval.requested")
        workflow = asked["workflow"]
        assert asked["task"] == "build" and asked["data"]["question"] == "ship parser?"
        shown = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
        assert [t["status"] for t in shown["tasks"]] == ["waiting"]

        wrong = agentdeck("workflows", "approve", workflow, "--task", "deploy", env=env)
        assert wrong.returncode == 2
        assert "has no open approval (waiting: build)" in wrong.stderr and "Traceback" not in wrong.stderr

        answered = agentdeck("workflows", "approve", workflow, "--task", "build", "--value", '{"ship": true}', env=env)
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.startswith(f"answered build of {workflow}")
        assert run.wait_exit() == 0, run.stderr()
    finally:
        run.stop()
    events = run.snapshot()
    assert any(e["type"] == "approval.answered" and e["data"]["value"] == {"ship": True} for e in events)
    [done] = [e for e in events if e["type"] == "task.completed"]
    shown = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    assert shown["tasks"][0]["output"]["answer"] == {"ship": True}

    # Time travel from the command line: the history, then a fork just after the approval with an edited topic,
    # run here in the foreground: only `report` runs again, and the answer given before is kept.
    history = agentdeck("workflows", "history", workflow, "--task", "build", "--json", env=env)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    assert entries[0]["next"] == [] and entries[-1]["source"] == "input"
    assert [h["step"] for h in entries] == sorted((h["step"] for h in entries), reverse=True)
    before_report = next(h for h in entries if h["next"] == ["report"])
    assert before_report["ran"] == ["approve"]
    forked = agentdeck(
        "workflows", "fork", workflow, "--task", "build", "--checkpoint", before_report["checkpoint"],
        "--set", "topic=lexer", env=env,
    )  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    shown = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    output = shown["tasks"][0]["output"]
    assert output["topic"] == "lexer" and output["answer"] == {"ship": True}
    assert output["log"] == ["plan", "write", "check", "approve:{'ship': True}", "report"]
    assert done["task"] == "build"
