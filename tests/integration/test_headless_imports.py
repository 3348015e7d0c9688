"""Headless stays headless: commands that open no dashboard run without Textual, and ``validate``, which opens no
database either, without the SurrealDB driver or Redis (harlequin's import-hygiene check, on the real commands).

Each case runs the ``agentdeck`` entry point in a fresh interpreter and reports which of the watched packages it
loaded. The import-linter contract in pyproject.toml checks the same for Textual statically.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("textual", "surrealdb", "redis", "db.connection", "langgraph")

RUN_COMMAND = """
import json, sys
args, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["agentdeck", *args]
from tui.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({name for name in watched for module in sys.modules if module == name or module.startswith(name + ".")})
print(json.dumps({"exit": code, "loaded": loaded}))
"""


def loaded_by(*args: str) -> tuple[int, list[str], str]:
    """Run ``agentdeck ARGS`` in a fresh interpreter: its exit code, the ``WATCHED`` packages it loaded, its output."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMAND, json.dumps(list(args)), json.dumps(WATCHED)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *output, report = done.stdout.strip().splitlines()
    result = json.loads(report)
    return result["exit"], result["loaded"], "\n".join(output)


# validate imports each python and graph agent's module, so that one failing at import is reported with its
# file:line before a run (test_cli_bad_input.py); the demo's graph module imports LangGraph itself, so validating the
# demo loads it, and nothing else. agentdeck loads none of them on its own account: a workflow without graph agents
# (the quickstart) loads no LangGraph.
@pytest.mark.parametrize("example, theirs", [("quickstart.yaml", []), ("demo.yaml", ["langgraph"])])
def test_validate_loads_neither_textual_nor_the_database_driver_nor_redis(example: str, theirs: list[str]) -> None:
    exit_code, loaded, output = loaded_by("validate", f"examples/{example}")
    assert exit_code == 0 and ": ok" in output
    assert loaded == theirs


def test_listing_workflows_loads_no_textual() -> None:
    exit_code, loaded, _ = loaded_by("workflows", "list", "--db", "mem://")
    assert exit_code == 0
    assert "textual" not in loaded
    assert "surrealdb" in loaded  # the check sees what a command loads: this one opens a database


@pytest.mark.parametrize("args", [["--help"], ["workflows", "--help"], ["run", "--help"]])
def test_help_loads_none_of_them(args: list[str]) -> None:
    """`agentdeck --help` answered in well under a second (issue 12): it loads no UI, driver, Redis or LangGraph."""
    exit_code, loaded, output = loaded_by(*args)
    assert exit_code == 0 and "Usage" in output
    assert loaded == []
