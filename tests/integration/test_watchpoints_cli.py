"""``agentdeck workflows watch`` against a running ``agentdeck run --headless --json`` (its control socket), and
``agentdeck validate`` / ``run`` of a file whose watch expression is bad."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.integration.test_cli_engine import (
    WORKFLOWS,
    CountingRun,
    RunningWorkflow,
    agentdeck,
    clean_env,
    counting,
    kill_leftovers,
    processes_with,
    tick,
)
from tests.integration.test_watchpoints import frozen_process

__all__ = ["counting"]  # the fixture, used by name


def test_add_list_and_remove_watchpoints_of_a_running_workflow(counting: CountingRun) -> None:
    run, workflow, env, marker = counting.run, counting.workflow, counting.env, counting.marker

    added = agentdeck("workflows", "watch", workflow, "--when", 'output ~ "^tick 1[0-9]{2}$"', "--task", "count",
                      env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    watch_id = added.stdout.strip()
    assert watch_id.startswith("wp-") and len(added.stdout.splitlines()) == 1  # the contract: just the new id

    idle = agentdeck("workflows", "watch", workflow, "--when", "running > 1h", "--name", "slow", env=env)
    assert idle.returncode == 0, idle.stderr
    listed = json.loads(agentdeck("workflows", "watch", workflow, "--list", "--json", env=env).stdout)
    assert [(w["id"], w["task"], w["origin"]) for w in listed[:1]] == [(watch_id, "count", "live")]
    assert listed[1]["name"] == "slow"
    table = agentdeck("workflows", "watch", workflow, "--list", env=env)
    assert table.returncode == 0 and watch_id in table.stdout and "running > 1h  (slow)" in table.stdout
    removed = agentdeck("workflows", "watch", workflow, "--remove", listed[1]["id"], env=env)
    assert removed.returncode == 0 and listed[1]["id"] in removed.stdout, removed.stderr

    # tick 100 matches: the workflow pauses, the counting shell is frozen, the event says why.
    event = run.wait_for(lambda e: e["type"] == "watchpoint.triggered", "watchpoint.triggered", timeout=90)
    assert event["task"] == "count" and event["data"]["watchpoint"] == watch_id
    assert event["data"]["conditions"][0]["values"]["line"] == "tick 100"
    run.wait_for(lambda e: e["type"] == "workflow.paused", "workflow.paused")
    deadline = time.monotonic() + 60
    while (
        True
    ):  # a shell in disk sleep takes its SIGSTOP when it leaves the kernel (a vfork parent: see frozen_process)
        states: dict[int, str] = {p.pid: p.status() for p in processes_with(marker) if p.pid != run.proc.pid}
        with contextlib.suppress(psutil.NoSuchProcess, OSError):
            if states and all(frozen_process(pid, states) for pid in states):
                break
        assert time.monotonic() < deadline, f"the counting shell is not stopped: {states}"
        time.sleep(0.05)
    shown = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    assert shown["status"] == "paused"

    # Removed, then resumed: counting goes on past the lines that matched, and nothing pauses it again.
    assert agentdeck("workflows", "watch", workflow, "--remove", watch_id, env=env).returncode == 0
    before = len(run.snapshot())
    assert agentdeck("workflows", "resume", workflow, env=env).returncode == 0
    run.wait_for(lambda e: (tick(e) or 0) >= 130, "tick 130 after resume", since=before)
    assert [e for e in run.snapshot()[before:] if e["type"] == "watchpoint.triggered"] == []
    listed = json.loads(agentdeck("workflows", "watch", workflow, "--list", "--json", env=env).stdout)
    assert listed == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--when", "cost_usd >"], "column 11: the expression ends too early"),
        (["--when", "running > 1m", "--task", "nope"], "no task 'nope'"),
        (["--remove", "wp-nope"], "no watchpoint 'wp-nope'"),
        ([], "give one of --when EXPR, --list or --remove"),
    ],
)
def test_bad_watch_requests_are_a_clear_error_and_exit_2(counting: CountingRun, args: list[str], said: str) -> None:
    result = agentdeck("workflows", "watch", counting.workflow, *args, env=counting.env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert counting.run.proc.poll() is None, "a bad request stopped the owner"


def test_validate_and_run_report_a_bad_watch_with_file_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: w\nagents: {sh: {kind: shell}}\ntasks:\n  - id: a\n    agent: sh\n    run: echo hi\n"
        '    watch:\n      - output ~ "(x"\n'
    )
    env = clean_env(tmp_path)
    for command in (["validate", str(path)], ["run", str(path), "--headless", "--db", "mem://"]):
        result = agentdeck(*command, env=env)
        assert result.returncode == 2, result.stderr
        where = f"{path}:8: task 'a': watch[0].when is not a valid watch expression: column 13: "
        assert where + "bad regular expression: missing )" in result.stderr  # at the closing quote: no ) there
        assert "Traceback" not in result.stderr


def test_run_with_watch_pauses_at_the_armed_condition_and_resumes_to_the_end(tmp_path: Path) -> None:
    """``run --watch EXPR`` arms a watchpoint before the first task starts (the README's demo does the same with
    ``demo --watch 'node check runs >= 2'``)."""
    marker = f"agentdeck-test-{uuid.uuid4().hex}"
    env = clean_env(tmp_path)
    args = ["run", str(WORKFLOWS / "cli_counter.yaml"), "--headless", "--json", "--var", f"marker={marker}"]
    run = RunningWorkflow([*args, "--watch", 'output ~ "^tick 40$"'], env, tmp_path / "run.stderr")
    try:
        event = run.wait_for(lambda e: e["type"] == "watchpoint.triggered", "watchpoint.triggered", timeout=90)
        assert event["task"] == "count" and event["data"]["when"] == 'output ~ "^tick 40$"'
        assert event["data"]["conditions"][0]["values"]["line"] == "tick 40"
        run.wait_for(lambda e: e["type"] == "workflow.paused", "workflow.paused")
        workflow = event["workflow"]
        listed = json.loads(agentdeck("workflows", "watch", workflow, "--list", "--json", env=env).stdout)
        assert [w["when"] for w in listed] == ['output ~ "^tick 40$"']
        assert agentdeck("workflows", "watch", workflow, "--remove", listed[0]["id"], env=env).returncode == 0
        since = len(run.snapshot())
        assert agentdeck("workflows", "resume", workflow, env=env).returncode == 0
        run.wait_for(lambda e: (tick(e) or 0) >= 60, "ticks after resume", since=since)
        assert agentdeck("workflows", "cancel", workflow, env=env).returncode == 0
        assert run.wait_exit(timeout=60) == 1, run.stderr()
    finally:
        run.stop()
        kill_leftovers(marker)


def test_a_bad_watch_flag_exits_2_with_its_column_before_anything_runs(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    counter = str(WORKFLOWS / "cli_counter.yaml")
    result = agentdeck("run", counter, "--headless", "--var", "marker=m", "--watch", "tokens >", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--watch: column 9" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "xdg" / "agentdeck").exists(), "a database was opened for a bad flag"
