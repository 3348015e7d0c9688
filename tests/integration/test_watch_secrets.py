"""Secrets never reach a ``tool.called`` event (nor a watchpoint's values built from it), whatever characters they
hold: a multi-line key, or a value with a quote or backslash, is escaped in the arguments' JSON text, where a plain
search for the secret does not find it. Real parts: embedded SurrealDB, the llm agent's real ``run_command`` tool
and shell, a langchain-core fake chat model as the provider (the one boundary faked).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.support.fake_llm import reply, script

MODEL = "openai:gpt-4o-mini"
KEY = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END TEST KEY-----"
QUOTED = 'pa"ss\\word-7f3a'


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path / "work") as eng:
        yield eng


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("H8_KEY", KEY)
    monkeypatch.setenv("H8_QUOTED", QUOTED)
    yield


async def test_tool_call_arguments_hide_secrets_with_newlines_and_quotes(engine: Engine, secrets: Any) -> None:
    calls = [
        ("run_command", {"command": f"printf '%s' '{KEY}' > key.pem"}),
        ("run_command", {"command": f"echo '{QUOTED}'"}),
        ("run_command", {"command": "echo QUJDREVGR0hJSktMTU5PUA=="}),  # one line of the key alone
    ]
    _, unregister = script(
        MODEL,
        [reply(tool=call, tokens=(10, 5), call_id=f"c{i}") for i, call in enumerate(calls)]
        + [reply("done", tokens=(10, 5))],
    )
    try:
        spec = WorkflowSpec.model_validate(
            {
                "name": "secret-tools",
                "agents": {"coder": {"kind": "llm", "model": MODEL, "options": {"tools": ["run_command"]}}},
                "tasks": [
                    {
                        "id": "agent",
                        "agent": "coder",
                        "input": {"prompt": "go"},
                        "secrets": ["H8_KEY", "H8_QUOTED"],
                        "watch": ["tool_repeats >= 1"],
                    }
                ],
            }
        )
        wf = await engine.submit(spec)
        # The watchpoint pauses at each call; resume until the end.
        while (status := await _settled(engine, wf)) is WorkflowStatus.PAUSED:
            await engine.resume(wf)
        assert status is WorkflowStatus.COMPLETED
    finally:
        unregister()
    await engine.recorder.flush()
    stored = await engine.stores.events.list(wf)
    called = [e for e in stored if e.type == "tool.called"]
    assert len(called) == 3
    text = json.dumps([e.data for e in stored if e.type in ("tool.called", "watchpoint.triggered")])
    for leaked in (KEY, QUOTED, "QUJDREVGR0hJSktMTU5PUA=="):
        assert leaked not in text and json.dumps(leaked)[1:-1] not in text, f"{leaked!r} in {text}"
    assert "***" in called[0].data["args"] and "***" in called[1].data["args"]
    # The same call still reads as the same call (the digest is of the real arguments).
    assert len({e.data["call"] for e in called}) == 3


async def _settled(engine: Engine, wf: str) -> WorkflowStatus:
    """The workflow's status once it is paused or finished."""
    from tests.support.polling import until

    async def settled() -> WorkflowStatus | None:
        if engine.is_paused(wf):
            return WorkflowStatus.PAUSED
        if not engine.is_running(wf):
            row = await engine.stores.workflows.get(wf)
            return row.status if row is not None else None
        return None

    found: WorkflowStatus = await until(settled, "the workflow paused or finished", limit_s=60)
    return found
