"""Conformance of ``ControlRequestStore``: a control request is written, read back, and answered once."""

from __future__ import annotations

import pytest

from db.models import ControlRequest
from db.stores import RecordNotFound, Stores


class ControlRequestStoreConformance:
    async def test_create_and_get_round_trip(self, stores: Stores) -> None:
        request = ControlRequest(workflow="wf-1", op="retry", args={"task": "build", "note": None})
        await stores.control_requests.create(request)
        fetched = await stores.control_requests.get(request.id)
        assert fetched == request
        assert fetched.status == "pending" and fetched.args == {"task": "build", "note": None}

    async def test_answer_done_and_failed(self, stores: Stores) -> None:
        ok = await stores.control_requests.create(ControlRequest(workflow="wf-1", op="pause"))
        bad = await stores.control_requests.create(ControlRequest(workflow="wf-1", op="rollback"))
        await stores.control_requests.answer(ok.id, ok=True, message="paused wf-1", by="host:1")
        await stores.control_requests.answer(bad.id, ok=False, message="no checkpoint cp-x", by="host:1")
        done = await stores.control_requests.get(ok.id)
        failed = await stores.control_requests.get(bad.id)
        assert done is not None and (done.status, done.result, done.error, done.answered_by) == (
            "done", "paused wf-1", None, "host:1"
        )  # fmt: skip
        assert failed is not None and (failed.status, failed.error, failed.result) == (
            "failed", "no checkpoint cp-x", None
        )  # fmt: skip

    async def test_missing_requests(self, stores: Stores) -> None:
        assert await stores.control_requests.get("ctl-nope") is None
        with pytest.raises(RecordNotFound):
            await stores.control_requests.answer("ctl-nope", ok=True, message="x", by="y")
        assert await stores.control_requests.get("ctl-nope") is None
