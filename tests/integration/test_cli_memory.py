"""``agentdeck memory add|search`` as a user runs them: real CLI processes, the real embedder and SurrealDB, on a
database of their own or through the control socket of an engine that holds the database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli_engine import (  # noqa: F401 - counting is a fixture used by name
    CountingRun,
    agentdeck,
    clean_env,
    counting,
)

FACTS = {
    "planner": "The release train leaves on Thursdays at noon.",
    "billing": "Customers in Norway want their invoices in Norwegian kroner.",
    "ops": "The staging database password rotates every Monday morning.",
}


def test_added_memories_are_found_by_meaning_as_json(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "AGENTDECK_DB": f"surrealkv://{tmp_path / 'state.db'}"}
    for agent, fact in FACTS.items():
        added = agentdeck("memory", "add", fact, "--agent", agent, "--meta", "source=cli", "--json", env=env)
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["metadata"] == {"source": "cli"}

    found = agentdeck("memory", "search", "when does the release ship?", "--json", "-k", "2", env=env)

    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["content"] == FACTS["planner"]
    assert len(hits) == 2 and hits[0]["score"] > hits[1]["score"]
    assert hits[0]["agent"] == "planner" and "embedding" not in hits[0]
    only_billing = json.loads(agentdeck("memory", "search", "release", "--agent", "billing", "--json", env=env).stdout)
    assert [h["agent"] for h in only_billing] == ["billing"]
    human = agentdeck("memory", "search", "invoice currency", env=env)
    assert human.returncode == 0 and FACTS["billing"] in human.stdout.splitlines()[1]


def test_a_bad_memory_type_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "AGENTDECK_DB": f"surrealkv://{tmp_path / 'state.db'}"}

    result = agentdeck("memory", "add", "some fact", "--agent", "a", "--type", "forever", env=env)

    assert result.returncode == 2
    assert "unknown memory type 'forever'" in result.stderr and "Traceback" not in result.stderr


def test_memory_commands_reach_the_engine_that_holds_the_database(counting: CountingRun) -> None:  # noqa: F811
    # The running workflow's engine has the embedded database locked: both commands go through its socket.
    added = agentdeck("memory", "add", FACTS["ops"], "--agent", "ops", "--json", env=counting.env)
    assert added.returncode == 0, added.stderr

    found = agentdeck("memory", "search", "how often does the staging password change", "--json", env=counting.env)

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["id"] == json.loads(added.stdout)["id"]
