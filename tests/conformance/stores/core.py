"""Conformance checks for the engine's own state: workflows, tasks, checkpoints and events.

``updated_at`` is left out of the round trips on purpose: the store stamps it on every write (the dashboard
shows "updated 3s ago" from it), so what comes back is the time of the write, not the value sent. A separate
check per store pins that behaviour down.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from db.models import Checkpoint, Event, Task, TaskStatus, Workflow, WorkflowStatus, utcnow
from db.stores import RecordNotFound, Stores
from tests.conformance.stores._data import PLUS_TWO, at

# JSON-like values a task may return; each must come back equal and of the same type.
TASK_OUTPUTS: list[Any] = [
    {
        "summary": "ok",
        "files": [{"path": "a.py", "lines": [1, 2, 3]}],
        "meta": {"tokens": {"in": 10, "out": 4}},
    },
    ["first", 2, 3.5, {"nested": [True, False]}],
    "plain text answer",
    42,
    0.125,
    True,
]


def _full_workflow(workflow_id: str = "wf-full") -> Workflow:
    """A workflow with every optional field set, timestamps in two zones and with microseconds."""
    return Workflow(
        id=workflow_id,
        name="nightly report",
        description="collect, summarise, publish",
        status=WorkflowStatus.RUNNING,
        spec={"tasks": [{"key": "collect", "agent": "scout", "depends_on": []}], "limits": {"parallel": 3}},
        source="workflows/nightly.yaml",
        vars={"date": "2025-03-14", "targets": ["eu", "us"], "retry": {"max": 2}},
        owner="worker-7",
        lease_until=at(30).astimezone(PLUS_TWO),
        error="transient: rate limited",
        created_at=at(-60),
        started_at=at(-59),
        finished_at=at(-1).astimezone(PLUS_TWO),
    )


def _full_task(workflow: str = "wf-1", key: str = "summarise") -> Task:
    return Task(
        workflow=workflow,
        key=key,
        agent="writer",
        status=TaskStatus.RETRYING,
        depends_on=["collect", "clean"],
        input={"prompt": "summarise", "sources": [{"url": "https://example.org", "weight": 0.5}]},
        output=TASK_OUTPUTS[0],
        error="timeout after 30s",
        attempts=2,
        max_attempts=5,
        progress=0.75,
        created_at=at(-10),
        started_at=at(-9).astimezone(PLUS_TWO),
        finished_at=at(-1),
    )


def _event(workflow: str, seq: int, **fields: Any) -> Event:
    return Event(workflow=workflow, seq=seq, type=fields.pop("type", "task.progress"), ts=at(seq / 60), **fields)


class WorkflowStoreConformance:
    async def test_create_and_get_round_trip_every_field(self, stores: Stores) -> None:
        workflow = _full_workflow()

        created = await stores.workflows.create(workflow)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        expected = workflow.model_dump(exclude={"updated_at"})
        assert created.model_dump(exclude={"updated_at"}) == expected
        assert fetched.model_dump(exclude={"updated_at"}) == expected
        assert type(fetched.status) is WorkflowStatus
        assert fetched.status is WorkflowStatus.RUNNING

    async def test_as_recorded_keeps_updated_at_and_other_writes_stamp_it(self, stores: Stores) -> None:
        workflow = Workflow(name="imported", created_at=at(0), updated_at=at(5))
        await stores.workflows.create(workflow, as_recorded=True)
        task = Task(workflow=workflow.id, key="a", agent="sh", created_at=at(0), updated_at=at(6))
        await stores.tasks.put_many([task], as_recorded=True)
        fetched, fetched_task = await stores.workflows.get(workflow.id), await stores.tasks.get(workflow.id, "a")
        assert fetched is not None and fetched.updated_at == at(5)
        assert fetched_task is not None and fetched_task.updated_at == at(6)

        await stores.workflows.update(workflow.id, error="later")
        await stores.tasks.update(workflow.id, "a", attempts=1)
        later, later_task = await stores.workflows.get(workflow.id), await stores.tasks.get(workflow.id, "a")
        assert later is not None and later.updated_at > at(5)
        assert later_task is not None and later_task.updated_at > at(6)

    async def test_defaults_round_trip(self, stores: Stores) -> None:
        workflow = Workflow(name="minimal", created_at=at(0))

        await stores.workflows.create(workflow)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        assert fetched.model_dump(exclude={"updated_at"}) == workflow.model_dump(exclude={"updated_at"})
        assert fetched.status is WorkflowStatus.PENDING
        assert (fetched.owner, fetched.lease_until, fetched.error, fetched.started_at) == (
            None,
            None,
            None,
            None,
        )

    async def test_get_missing_returns_none(self, stores: Stores) -> None:
        assert await stores.workflows.get("wf-nowhere") is None

    async def test_duplicate_id_is_rejected_and_original_kept(self, stores: Stores) -> None:
        await stores.workflows.create(Workflow(id="wf-dup", name="first"))

        with pytest.raises(ValueError, match="wf-dup"):
            await stores.workflows.create(Workflow(id="wf-dup", name="second"))

        kept = await stores.workflows.get("wf-dup")
        assert kept is not None
        assert kept.name == "first"
        assert [w.id for w in await stores.workflows.list()] == ["wf-dup"]

    async def test_update_changes_given_fields_only(self, stores: Stores) -> None:
        workflow = await stores.workflows.create(_full_workflow())
        changes = {"status": WorkflowStatus.COMPLETED, "finished_at": at(5), "error": "retried and recovered"}

        returned = await stores.workflows.update(workflow.id, **changes)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        expected = workflow.model_copy(update=changes).model_dump(exclude={"updated_at"})
        assert returned.model_dump(exclude={"updated_at"}) == expected
        assert fetched.model_dump(exclude={"updated_at"}) == expected
        assert fetched.status is WorkflowStatus.COMPLETED

    async def test_update_replaces_a_dict_field_whole(self, stores: Stores) -> None:
        # Keys of the old value must not survive: a resumed run with new vars must not see stale ones.
        workflow = await stores.workflows.create(_full_workflow())
        new_vars = {"date": "2025-03-15"}

        returned = await stores.workflows.update(workflow.id, vars=new_vars)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        assert returned.vars == new_vars
        assert fetched.vars == new_vars
        assert fetched.spec == workflow.spec

    async def test_update_with_none_clears_optional_fields(self, stores: Stores) -> None:
        workflow = await stores.workflows.create(_full_workflow())
        cleared = {"source": None, "owner": None, "lease_until": None, "error": None, "finished_at": None}

        returned = await stores.workflows.update(workflow.id, **cleared)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        for field in cleared:
            assert getattr(returned, field) is None, field
            assert getattr(fetched, field) is None, field
        assert fetched.started_at == workflow.started_at  # untouched optional field stays set

    async def test_update_stamps_updated_at(self, stores: Stores) -> None:
        workflow = await stores.workflows.create(Workflow(name="stamped", updated_at=at(-1000)))
        before_update = utcnow()

        returned = await stores.workflows.update(workflow.id, status=WorkflowStatus.RUNNING)
        fetched = await stores.workflows.get(workflow.id)

        assert fetched is not None
        assert returned.updated_at >= before_update
        assert fetched.updated_at >= before_update

    async def test_update_missing_raises_record_not_found_and_creates_nothing(self, stores: Stores) -> None:
        with pytest.raises(RecordNotFound):
            await stores.workflows.update("wf-ghost", status=WorkflowStatus.RUNNING)

        assert await stores.workflows.get("wf-ghost") is None
        assert await stores.workflows.list() == []

    async def test_list_is_newest_first(self, stores: Stores) -> None:
        ages = list(range(8))
        random.Random(1).shuffle(ages)  # insertion order must not decide the listing order
        for minutes in ages:
            await stores.workflows.create(Workflow(id=f"wf-{minutes}", name="w", created_at=at(minutes)))

        listed = await stores.workflows.list()

        assert [w.id for w in listed] == [f"wf-{m}" for m in sorted(ages, reverse=True)]

    async def test_list_filters_by_status_and_honours_limit(self, stores: Stores) -> None:
        statuses = [
            WorkflowStatus.RUNNING,
            WorkflowStatus.COMPLETED,
            WorkflowStatus.RUNNING,
            WorkflowStatus.FAILED,
        ]
        for index, status in enumerate(statuses * 2):
            await stores.workflows.create(Workflow(id=f"wf-{index}", name="w", status=status, created_at=at(index)))

        running = await stores.workflows.list(status=WorkflowStatus.RUNNING)
        newest_two = await stores.workflows.list(limit=2)
        newest_running = await stores.workflows.list(status=WorkflowStatus.RUNNING, limit=1)

        assert [w.id for w in running] == ["wf-6", "wf-4", "wf-2", "wf-0"]
        assert all(w.status is WorkflowStatus.RUNNING for w in running)
        assert [w.id for w in newest_two] == ["wf-7", "wf-6"]
        assert [w.id for w in newest_running] == ["wf-6"]


class TaskStoreConformance:
    async def test_put_and_get_round_trip_every_field(self, stores: Stores) -> None:
        task = _full_task()

        await stores.tasks.put_many([task])
        fetched = await stores.tasks.get(task.workflow, task.key)

        assert fetched is not None
        assert fetched.model_dump(exclude={"updated_at"}) == task.model_dump(exclude={"updated_at"})
        assert fetched.status is TaskStatus.RETRYING

    @pytest.mark.parametrize("output", TASK_OUTPUTS, ids=lambda value: type(value).__name__)
    async def test_output_of_any_json_shape_round_trips(self, stores: Stores, output: Any) -> None:
        await stores.tasks.put_many([Task(workflow="wf-1", key="t", agent="a", output=output)])

        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        assert fetched.output == output
        assert type(fetched.output) is type(output)

    async def test_null_values_inside_input_and_output_are_kept(self, stores: Stores) -> None:
        # An agent answering {"answer": null} must not read back as {}: the key's presence is the answer.
        output = {"answer": None, "candidates": [None, {"score": None}], "nested": {"reason": None}}
        task = Task(workflow="wf-1", key="t", agent="a", input={"hint": None}, output=output)

        await stores.tasks.put_many([task])
        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        assert fetched.output == output
        assert fetched.input == {"hint": None}

    async def test_get_missing_returns_none(self, stores: Stores) -> None:
        await stores.tasks.put_many([Task(workflow="wf-1", key="present", agent="a")])

        assert await stores.tasks.get("wf-1", "absent") is None
        assert await stores.tasks.get("wf-2", "present") is None

    async def test_put_many_replaces_a_task_with_the_same_key(self, stores: Stores) -> None:
        await stores.tasks.put_many([_full_task("wf-1", "t")])
        replacement = Task(workflow="wf-1", key="t", agent="reviewer", status=TaskStatus.QUEUED, created_at=at(3))

        await stores.tasks.put_many([replacement])

        listed = await stores.tasks.list("wf-1")
        assert [t.model_dump(exclude={"updated_at"}) for t in listed] == [
            replacement.model_dump(exclude={"updated_at"})
        ]

    async def test_put_many_writes_a_large_batch(self, stores: Stores) -> None:
        tasks = [Task(workflow="wf-big", key=f"t{i:04d}", agent=f"agent-{i % 7}", created_at=at(i)) for i in range(400)]

        await stores.tasks.put_many(tasks)

        listed = await stores.tasks.list("wf-big")
        assert [t.key for t in listed] == [t.key for t in tasks]
        assert [t.agent for t in listed] == [t.agent for t in tasks]

    async def test_list_is_in_creation_order_and_per_workflow(self, stores: Stores) -> None:
        order = ["c", "a", "e", "b", "d"]  # created in this order; keys deliberately not alphabetical
        tasks = [Task(workflow="wf-1", key=key, agent="a", created_at=at(i)) for i, key in enumerate(order)]
        shuffled = list(tasks)
        random.Random(2).shuffle(shuffled)
        other = [Task(workflow="wf-2", key="a", agent="other", created_at=at(-5))]

        await stores.tasks.put_many(shuffled + other)

        assert [t.key for t in await stores.tasks.list("wf-1")] == order
        assert [(t.key, t.agent) for t in await stores.tasks.list("wf-2")] == [("a", "other")]
        assert await stores.tasks.list("wf-empty") == []

    async def test_update_changes_given_fields_only(self, stores: Stores) -> None:
        task = _full_task("wf-1", "t")
        await stores.tasks.put_many([task])
        changes = {"status": TaskStatus.COMPLETED, "attempts": 3, "progress": 1.0, "finished_at": at(7)}

        returned = await stores.tasks.update("wf-1", "t", **changes)
        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        expected = task.model_copy(update=changes).model_dump(exclude={"updated_at"})
        assert returned.model_dump(exclude={"updated_at"}) == expected
        assert fetched.model_dump(exclude={"updated_at"}) == expected
        assert fetched.status is TaskStatus.COMPLETED

    async def test_update_replaces_a_dict_output_whole(self, stores: Stores) -> None:
        # A retry's output replaces the failed attempt's; keys from the old output must not leak into it.
        task = _full_task("wf-1", "t")
        await stores.tasks.put_many([task])
        output = {"report": {"sections": [{"title": "intro", "words": 120}]}}
        new_input = {"prompt": "shorter"}

        returned = await stores.tasks.update("wf-1", "t", output=output, input=new_input)
        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        assert (returned.output, returned.input) == (output, new_input)
        assert (fetched.output, fetched.input) == (output, new_input)

    async def test_update_with_none_clears_optional_fields(self, stores: Stores) -> None:
        await stores.tasks.put_many([_full_task("wf-1", "t")])
        cleared = {"error": None, "progress": None, "output": None, "started_at": None, "finished_at": None}

        returned = await stores.tasks.update("wf-1", "t", status=TaskStatus.QUEUED, **cleared)
        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        for field in cleared:
            assert getattr(returned, field) is None, field
            assert getattr(fetched, field) is None, field
        assert fetched.status is TaskStatus.QUEUED
        assert fetched.attempts == 2  # not part of the update

    async def test_update_stamps_updated_at(self, stores: Stores) -> None:
        await stores.tasks.put_many([Task(workflow="wf-1", key="t", agent="a", updated_at=at(-1000))])
        before_update = utcnow()

        returned = await stores.tasks.update("wf-1", "t", progress=0.5)

        assert returned.updated_at >= before_update

    async def test_update_missing_raises_record_not_found_and_creates_nothing(self, stores: Stores) -> None:
        await stores.tasks.put_many([Task(workflow="wf-1", key="t", agent="a")])

        with pytest.raises(RecordNotFound):
            await stores.tasks.update("wf-1", "ghost", status=TaskStatus.RUNNING)
        with pytest.raises(RecordNotFound):
            await stores.tasks.update("wf-2", "t", status=TaskStatus.RUNNING)

        assert await stores.tasks.get("wf-1", "ghost") is None
        assert await stores.tasks.list("wf-2") == []

    async def test_set_writes_like_update_without_reading_back(self, stores: Stores) -> None:
        task = _full_task("wf-1", "t")
        await stores.tasks.put_many([task])
        changes = {"status": TaskStatus.RUNNING, "output": {"partial": [1, None]}, "error": None}

        await stores.tasks.set("wf-1", "t", **changes)
        fetched = await stores.tasks.get("wf-1", "t")

        assert fetched is not None
        expected = task.model_copy(update=changes).model_dump(exclude={"updated_at"})
        assert fetched.model_dump(exclude={"updated_at"}) == expected
        with pytest.raises(RecordNotFound):
            await stores.tasks.set("wf-1", "ghost", status=TaskStatus.RUNNING)
        assert await stores.tasks.get("wf-1", "ghost") is None

    async def test_same_key_in_two_workflows_is_two_tasks(self, stores: Stores) -> None:
        await stores.tasks.put_many(
            [Task(workflow="wf-1", key="build", agent="a"), Task(workflow="wf-2", key="build", agent="b")]
        )

        await stores.tasks.update("wf-1", "build", status=TaskStatus.FAILED)

        first = await stores.tasks.get("wf-1", "build")
        second = await stores.tasks.get("wf-2", "build")
        assert first is not None and second is not None
        assert (first.agent, first.status) == ("a", TaskStatus.FAILED)
        assert (second.agent, second.status) == ("b", TaskStatus.PENDING)


class CheckpointStoreConformance:
    async def test_create_and_get_round_trip_every_field(self, stores: Stores) -> None:
        checkpoint = Checkpoint(
            id="cp-1",
            workflow="wf-1",
            number=3,
            reason="task completed",
            task="summarise",
            event_seq=118,
            task_states={
                "collect": {"status": "completed", "output": {"rows": [1, 2]}},
                "summarise": {"n": 1},
            },
            agent_states={"writer": {"memory_ids": ["mem-1", "mem-2"], "context": {"turns": 4}}},
            created_at=at(2).astimezone(PLUS_TWO),
        )

        created = await stores.checkpoints.create(checkpoint)
        fetched = await stores.checkpoints.get("cp-1")

        assert fetched is not None
        assert created.model_dump() == checkpoint.model_dump()
        assert fetched.model_dump() == checkpoint.model_dump()

    async def test_get_missing_returns_none(self, stores: Stores) -> None:
        assert await stores.checkpoints.get("cp-nowhere") is None

    async def test_number_is_unique_within_a_workflow(self, stores: Stores) -> None:
        await stores.checkpoints.create(Checkpoint(id="cp-a", workflow="wf-1", number=1, reason="first"))

        with pytest.raises(ValueError):
            await stores.checkpoints.create(Checkpoint(id="cp-b", workflow="wf-1", number=1, reason="again"))
        # The same number in another workflow is a different checkpoint.
        await stores.checkpoints.create(Checkpoint(id="cp-c", workflow="wf-2", number=1, reason="other"))

        assert [(c.id, c.reason) for c in await stores.checkpoints.list("wf-1")] == [("cp-a", "first")]
        assert [c.id for c in await stores.checkpoints.list("wf-2")] == ["cp-c"]
        assert await stores.checkpoints.get("cp-b") is None

    async def test_list_is_oldest_first_and_latest_is_the_highest_number(self, stores: Stores) -> None:
        numbers = list(range(1, 9))
        random.Random(3).shuffle(numbers)
        for number in numbers:
            await stores.checkpoints.create(
                Checkpoint(id=f"cp-{number}", workflow="wf-1", number=number, reason="r", created_at=at(number))
            )

        listed = await stores.checkpoints.list("wf-1")
        latest = await stores.checkpoints.latest("wf-1")

        assert [c.number for c in listed] == list(range(1, 9))
        assert latest is not None
        assert latest.id == "cp-8"

    async def test_workflows_are_isolated(self, stores: Stores) -> None:
        for number in (1, 2, 3):
            await stores.checkpoints.create(Checkpoint(workflow="wf-1", number=number, reason="one"))
        await stores.checkpoints.create(Checkpoint(workflow="wf-2", number=1, reason="two"))

        other = await stores.checkpoints.list("wf-2")
        latest_other = await stores.checkpoints.latest("wf-2")

        assert [(c.workflow, c.number) for c in other] == [("wf-2", 1)]
        assert latest_other is not None
        assert (latest_other.workflow, latest_other.number) == ("wf-2", 1)

    async def test_empty_workflow_has_no_checkpoints(self, stores: Stores) -> None:
        await stores.checkpoints.create(Checkpoint(workflow="wf-1", number=1, reason="r"))

        assert await stores.checkpoints.list("wf-empty") == []
        assert await stores.checkpoints.latest("wf-empty") is None


class EventStoreConformance:
    async def test_append_and_list_round_trip_every_field(self, stores: Stores) -> None:
        full = Event(
            id="ev-full",
            ts=at(1).astimezone(PLUS_TWO),
            seq=1,
            type="task.completed",
            workflow="wf-1",
            task="summarise",
            agent="writer",
            data={"output": {"summary": "ok", "tokens": [12, 34]}, "duration_s": 1.5, "ok": True},
        )
        bare = Event(id="ev-bare", ts=at(2), seq=2, type="workflow.paused", workflow="wf-1")

        await stores.events.append_many([full, bare])

        listed = await stores.events.list("wf-1")
        assert [e.model_dump() for e in listed] == [full.model_dump(), bare.model_dump()]
        assert (listed[1].task, listed[1].agent, listed[1].data) == (None, None, {})

    async def test_null_values_inside_data_are_kept(self, stores: Stores) -> None:
        # ``--json`` consumers see ``"error": null``; the stored event must say the same, not drop the key.
        data = {"error": None, "retries": [None, 1], "result": {"value": None}}

        await stores.events.append_many([_event("wf-1", 1, data=data)])

        [stored] = await stores.events.list("wf-1")
        assert stored.data == data

    async def test_a_large_batch_is_stored_in_seq_order(self, stores: Stores) -> None:
        events = [_event("wf-1", seq, data={"i": seq}) for seq in range(1, 2001)]
        shuffled = list(events)
        random.Random(4).shuffle(shuffled)

        await stores.events.append_many(shuffled)

        listed = await stores.events.list("wf-1")
        assert [e.seq for e in listed] == list(range(1, 2001))
        assert [e.data["i"] for e in listed] == list(range(1, 2001))
        assert await stores.events.last_seq("wf-1") == 2000

    async def test_after_seq_and_limit_page_through_events(self, stores: Stores) -> None:
        await stores.events.append_many([_event("wf-1", seq) for seq in range(1, 31)])

        page = await stores.events.list("wf-1", after_seq=10, limit=5)
        rest = await stores.events.list("wf-1", after_seq=25)
        beyond = await stores.events.list("wf-1", after_seq=30)

        assert [e.seq for e in page] == [11, 12, 13, 14, 15]
        assert [e.seq for e in rest] == [26, 27, 28, 29, 30]
        assert beyond == []

    async def test_repeated_seq_in_a_workflow_is_rejected(self, stores: Stores) -> None:
        await stores.events.append_many([_event("wf-1", 1, type="original"), _event("wf-1", 2)])

        with pytest.raises(ValueError):
            await stores.events.append_many([_event("wf-1", 1, type="impostor")])

        listed = await stores.events.list("wf-1")
        assert [(e.seq, e.type) for e in listed] == [(1, "original"), (2, "task.progress")]

    async def test_repeated_seq_within_one_batch_is_rejected(self, stores: Stores) -> None:
        with pytest.raises(ValueError):
            await stores.events.append_many([_event("wf-1", 5, type="first"), _event("wf-1", 5, type="second")])

    async def test_same_seq_in_another_workflow_is_accepted(self, stores: Stores) -> None:
        await stores.events.append_many([_event("wf-1", 1), _event("wf-1", 2)])

        await stores.events.append_many([_event("wf-2", 1, type="other")])

        assert [(e.workflow, e.seq, e.type) for e in await stores.events.list("wf-2")] == [("wf-2", 1, "other")]
        assert [e.seq for e in await stores.events.list("wf-1")] == [1, 2]

    async def test_last_seq_is_zero_when_empty(self, stores: Stores) -> None:
        assert await stores.events.last_seq("wf-empty") == 0

    async def test_last_seq_and_list_are_per_workflow(self, stores: Stores) -> None:
        await stores.events.append_many([_event("wf-1", seq) for seq in range(1, 8)])
        await stores.events.append_many([_event("wf-2", seq) for seq in range(1, 4)])

        assert await stores.events.last_seq("wf-1") == 7
        assert await stores.events.last_seq("wf-2") == 3
        assert {e.workflow for e in await stores.events.list("wf-2")} == {"wf-2"}
        assert await stores.events.list("wf-empty") == []
