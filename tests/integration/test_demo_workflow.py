"""The bundled demo workflow runs unattended to the end, its graph agent included (real LangGraph, real
subprocesses, mem://): the review prompt's deadline approves it, as in an unattended ``agentdeck demo``."""

from __future__ import annotations

from pathlib import Path

from db import connect
from db.models import WorkflowStatus
from engine.engine import Engine
from engine.spec import load_workflow
from tui.cli.dashboard import DEMO


async def test_the_demo_completes_unattended_with_its_graph_agent(tmp_path: Path) -> None:
    spec = load_workflow(DEMO)
    spec.agents["coder"].options["approval_deadline_s"] = 0.5  # shipped: 15 s
    measure = next(t for t in spec.tasks if t.id == "measure")
    measure.run = "echo 'the 20 s benchmark is skipped in this test'"  # everything else runs as shipped
    async with connect("mem://") as db, Engine(db, workdir_root=tmp_path) as engine:
        wf = await engine.submit(spec)
        assert await engine.wait(wf) is WorkflowStatus.COMPLETED
        nodes = [n.node for n in await engine.stores.graph_nodes.list(wf, "write_code")]
        # The first draft has a bug on purpose: check sends the graph back to draft (a cycle), then review asks.
        assert nodes == ["outline", "draft", "check", "draft", "check", "review", "save"]
        await engine.recorder.flush()
        approvals = [e for e in await engine.stores.events.list(wf) if e.type.startswith("approval.")]
        assert [(e.type, e.data.get("by")) for e in approvals] == [
            ("approval.requested", None), ("approval.granted", "deadline")
        ]  # fmt: skip
        unit_tests = await engine.stores.tasks.get(wf, "unit_tests")
        assert unit_tests is not None and unit_tests.status.value == "completed"
        written = tmp_path / wf / "write_code" / "src" / "textstats" / "stats.py"
        assert "def sentence_count" in written.read_text()
        # Its agents remember what they learned, and a question in other words finds it.
        remembered = {m.task for m in await engine.stores.memories.of_workflow(wf)}
        assert {"plan", "write_tests", "report"} <= remembered
        lessons = await engine.memory.search("why did the linter complain about the generated code?", k=1)
        if "lint" in remembered:  # ruff is on the PATH: the first lint attempt failed and said why
            assert lessons[0].memory.task == "lint" and "unused" in lessons[0].memory.content
