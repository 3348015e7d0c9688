"""Conformance of ``GraphNodeStore`` and ``ApprovalStore``: node executions replace their row; an approval is
opened once (asking again returns the first), answered once (the first answer wins), and listed by status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.models import Approval, ApprovalStatus, GraphNode
from db.stores import Stores


class GraphNodeStoreConformance:
    async def test_a_node_execution_is_one_row_updated_in_place(self, stores: Stores) -> None:
        started = GraphNode(id="wf-1/build/r1", workflow="wf-1", task="build", thread="wf-1:build", node="plan", step=1)
        await stores.graph_nodes.put(started)
        await stores.graph_nodes.put(
            started.model_copy(update={"status": "completed", "finished_at": datetime.now(UTC)})
        )
        rows = await stores.graph_nodes.list("wf-1")
        assert [(r.node, r.step, r.status) for r in rows] == [("plan", 1, "completed")]
        assert rows[0].finished_at is not None

    async def test_listed_oldest_first_and_by_task(self, stores: Stores) -> None:
        base = datetime.now(UTC)
        for i, (task, node) in enumerate([("build", "plan"), ("test", "run"), ("build", "write")]):
            await stores.graph_nodes.put(
                GraphNode(
                    id=f"wf-1/{task}/r{i}", workflow="wf-1", task=task, thread=f"wf-1:{task}", node=node, step=i,
                    started_at=base + timedelta(seconds=i),
                )
            )  # fmt: skip
        await stores.graph_nodes.put(GraphNode(id="wf-2/x/r", workflow="wf-2", task="x", thread="t", node="other"))
        assert [r.node for r in await stores.graph_nodes.list("wf-1")] == ["plan", "run", "write"]
        assert [r.node for r in await stores.graph_nodes.list("wf-1", "build")] == ["plan", "write"]


class ApprovalStoreConformance:
    async def test_open_once_then_the_first_row_comes_back(self, stores: Stores) -> None:
        first, new = await stores.approvals.open(
            Approval(workflow="wf-1", task="build", interrupt="i-1", prompt={"question": "ship?", "n": None})
        )
        again, new_again = await stores.approvals.open(
            Approval(workflow="wf-1", task="build", interrupt="i-1", prompt={"question": "changed"})
        )
        assert (new, new_again) == (True, False)
        assert again.prompt == {"question": "ship?", "n": None} == first.prompt
        assert again.status is ApprovalStatus.PENDING

    async def test_the_first_answer_wins(self, stores: Stores) -> None:
        opened, _ = await stores.approvals.open(Approval(workflow="wf-1", task="build", interrupt="i-1", default=True))
        answered = await stores.approvals.answer(opened.id, status=ApprovalStatus.ANSWERED, value={"x": 1}, by="ann")
        late = await stores.approvals.answer(opened.id, status=ApprovalStatus.DENIED, value=False, by="bob")
        assert answered is not None and (answered.status, answered.value, answered.answered_by) == (
            ApprovalStatus.ANSWERED, {"x": 1}, "ann"
        )  # fmt: skip
        assert answered.answered_at is not None
        assert late is None
        stored = await stores.approvals.get(opened.id)
        assert stored is not None and stored.value == {"x": 1} and stored.answered_by == "ann"

    async def test_an_answer_not_yet_announced_says_so(self, stores: Stores) -> None:
        opened, _ = await stores.approvals.open(Approval(workflow="wf-1", task="build", interrupt="i-1"))
        assert opened.announced is True  # nothing to announce for a pending approval
        await stores.approvals.answer(opened.id, status=ApprovalStatus.ANSWERED, value=1, by="cli@b", announced=False)
        stored = await stores.approvals.get(opened.id)
        assert stored is not None and (stored.announced, stored.answered_by) == (False, "cli@b")

    async def test_pending_only_lists_what_waits(self, stores: Stores) -> None:
        a, _ = await stores.approvals.open(Approval(workflow="wf-1", task="a", interrupt="i-a"))
        await stores.approvals.open(Approval(workflow="wf-1", task="b", interrupt="i-b"))
        await stores.approvals.open(Approval(workflow="wf-2", task="c", interrupt="i-c"))
        await stores.approvals.answer(a.id, status=ApprovalStatus.GRANTED, value=True, by="x")
        assert [p.task for p in await stores.approvals.list("wf-1", pending_only=True)] == ["b"]
        assert [p.task for p in await stores.approvals.list("wf-1")] == ["a", "b"]
        assert await stores.approvals.get("wf-1/a/nope") is None
