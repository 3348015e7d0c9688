"""The command line as a user meets it: every contract command is there, errors get exit codes, exits are clean."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from db import connect
from db.models import Workflow
from db.stores import Stores

AGENTDECK = str(Path(sys.executable).parent / "agentdeck")

CONTRACT_COMMANDS = [
    "demo",
    "run",
    "resume",
    "ui",
    "worker",
    "validate",
    "workflows",
    "checkpoints",
    "memory",
    "bench",
]
SUBCOMMANDS = {
    "workflows": ["list", "show", "pause", "resume", "cancel", "retry", "rollback", "approve", "history", "fork"],
    "checkpoints": ["list"],
    "memory": ["add", "search"],
}


def agentdeck(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [AGENTDECK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_every_contract_command() -> None:
    result = agentdeck("--help")
    assert result.returncode == 0, result.stderr
    for command in CONTRACT_COMMANDS:
        assert f" {command} " in result.stdout, f"{command} missing from --help"
    for group, names in SUBCOMMANDS.items():
        sub = agentdeck(group, "--help")
        assert sub.returncode == 0, sub.stderr
        for name in names:
            assert f" {name} " in sub.stdout, f"{group} {name} missing from {group} --help"


@pytest.mark.parametrize(
    "args",
    [
        ["demo"], ["run", "x.yaml"], ["resume", "wf-1"], ["ui"], ["worker", "--redis", "redis://127.0.0.1"],
        ["validate", "x.yaml"], ["bench"], ["workflows", "show", "wf-1"], ["workflows", "pause", "wf-1"],
        ["workflows", "retry", "wf-1", "--task", "t"], ["workflows", "rollback", "wf-1", "--to", "cp-1"],
        ["checkpoints", "list", "wf-1"], ["memory", "add", "x", "--agent", "a"], ["memory", "search", "x"],
        ["workflows", "approve", "wf-1", "--task", "t"], ["workflows", "history", "wf-1", "--task", "t"],
        ["workflows", "fork", "wf-1", "--task", "t", "--checkpoint", "c"],
    ],
)  # fmt: skip
def test_each_contract_command_has_working_help(args: list[str]) -> None:
    result = agentdeck(*args[:1], *([args[1]] if args[0] in SUBCOMMANDS else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_workflows_list_json_on_an_empty_database(tmp_path: Path) -> None:
    result = agentdeck("workflows", "list", "--json", "--db", f"surrealkv://{tmp_path / 'db'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_workflows_list_json_shows_stored_workflows(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path / 'db'}"

    async def seed() -> list[str]:
        async with connect(url) as db:
            stores = Stores.over(db)
            return [(await stores.workflows.create(Workflow(name=f"wf{i}"))).id for i in range(3)]

    ids = asyncio.run(seed())
    result = agentdeck("workflows", "list", "--json", env={"AGENTDECK_DB": url})
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert sorted(w["id"] for w in listed) == sorted(ids)
    assert {w["status"] for w in listed} == {"pending"}


def test_a_database_held_by_another_process_is_a_one_line_error_and_exit_3(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path / 'db'}"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import asyncio, sys\n"
            "from db import connect\n"
            "async def main():\n"
            f"    async with connect({url!r}):\n"
            "        print('open', flush=True)\n"
            "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)\n"
            "asyncio.run(main())\n",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = agentdeck("workflows", "list", "--db", url)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result.returncode == 3
    first, *rest = result.stderr.strip().splitlines()
    assert "in use by another agentdeck process" in first
    assert "Traceback" not in result.stderr
    assert all(line.strip().startswith("hint:") for line in rest)


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9"])  # a malformed URL is bad input: test_cli_bad_input.py
def test_unreachable_or_bad_database_url_exits_3_without_traceback(url: str) -> None:
    result = agentdeck("workflows", "list", "--db", url)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("agentdeck: ")


def test_bad_usage_exits_2() -> None:
    result = agentdeck("workflows", "retry", "wf-1")  # --task is required
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def _cli_runs_exit_cleanly(tmp_path: Path, runs: int) -> None:
    """The embedded engine used to abort at teardown (Rust panic, rc 134) when its native handle outlived
    the event loop; every entry point must close it deliberately. Fresh and reused stores."""

    def lane(parity: int) -> list[tuple[int, str]]:
        # Two lanes side by side, each over its own stores in turn (a store is locked while a run has it open):
        # every store is created once, then reopened.
        outcomes = []
        for i in range(parity, runs, 2):
            url = f"surrealkv://{tmp_path / f'db{i % 10}'}"
            result = agentdeck("workflows", "list", "--json", "--db", url)
            outcomes.append((result.returncode, result.stderr))
        return outcomes

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [outcome for done in pool.map(lane, (0, 1)) for outcome in done]
    assert len(outcomes) == runs
    unclean = [(rc, err) for rc, err in outcomes if rc != 0 or "panic" in err.lower()]
    assert not unclean, f"{len(unclean)} of {runs} runs were unclean, first: {unclean[0]}"


def test_twelve_cli_runs_exit_cleanly(tmp_path: Path) -> None:
    _cli_runs_exit_cleanly(tmp_path, 12)  # stores 0-9 opened fresh, 0 and 1 reopened


@pytest.mark.slow
def test_fifty_cli_runs_exit_cleanly(tmp_path: Path) -> None:
    _cli_runs_exit_cleanly(tmp_path, 50)
