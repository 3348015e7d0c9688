"""Human in the loop: a graph's ``interrupt()`` becomes an approval a person answers, or its deadline does.

An approval is a row in the ``approval`` table (so a headless run can be answered from another terminal with
``agentdeck workflows approve``, and an answer given while nobody runs the workflow is there when it resumes) and
``approval.requested`` / ``approval.granted|denied|answered`` events. The first answer wins. A prompt may carry a
deadline and a default answer, applied when the deadline passes; the event then says ``by: "deadline"``.

What a node passes to ``interrupt()`` is the prompt. When it is a dict, these keys mean something here:
``question`` (the text shown), ``deadline_s`` (seconds to wait), ``default`` (the answer applied at the deadline).
An agent's ``options.approval_deadline_s`` / ``options.approval_default`` apply when the prompt has none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from db._aio import wait_future
from db.models import APPROVAL_ANSWER_EVENTS, Approval, ApprovalStatus, EventType
from db.stores import Stores
from engine.errors import ControlError
from engine.events import EventRecorder

_POLL_S = 1.0  # how often a waiting task looks for an answer another process wrote


def status_for(value: Any, deny: bool = False) -> ApprovalStatus:
    """granted for yes, denied for no, answered for anything else (a text or a value)."""
    if deny or value is False:
        return ApprovalStatus.DENIED
    if value is True:
        return ApprovalStatus.GRANTED
    return ApprovalStatus.ANSWERED


def question_of(prompt: Any) -> str:
    """The human-readable question of a prompt."""
    if isinstance(prompt, dict):
        for key in ("question", "prompt", "message", "text"):
            if isinstance(prompt.get(key), str):
                return str(prompt[key])
    return prompt if isinstance(prompt, str) else repr(prompt)


class Approvals:
    """The engine's approvals: opened by graph tasks, answered by the dashboard, the CLI or a deadline."""

    def __init__(self, stores: Stores, recorder: EventRecorder) -> None:
        self.stores = stores
        self.recorder = recorder
        self._waiters: dict[str, asyncio.Future[Approval]] = {}

    async def ask(
        self,
        *,
        workflow: str,
        task: str,
        agent: str,
        interrupt_id: str,
        prompt: Any,
        node: str | None = None,
        options: dict[str, Any] | None = None,
        on_pending: Callable[[], Awaitable[None]] | None = None,
    ) -> Approval:
        """Open (or find again) the approval for one interrupt and wait for its answer. ``on_pending`` runs once
        the open row is stored, before the wait: a task shown as waiting can always be answered."""
        options = options or {}
        fields = prompt if isinstance(prompt, dict) else {}
        deadline_s = fields.get("deadline_s", options.get("approval_deadline_s"))
        default = fields.get("default", options.get("approval_default"))
        deadline = datetime.now(UTC) + timedelta(seconds=float(deadline_s)) if deadline_s is not None else None
        approval, new = await self.stores.approvals.open(
            Approval(
                workflow=workflow,
                task=task,
                interrupt=interrupt_id,
                node=node,
                prompt=prompt,
                default=default,
                deadline=deadline,
            )
        )
        if new:
            self.recorder.emit(
                workflow,
                EventType.APPROVAL_REQUESTED,
                task=task,
                agent=agent,
                data={
                    "approval": approval.id,
                    "node": node,
                    "question": question_of(prompt),
                    "prompt": prompt,
                    "deadline": deadline.isoformat() if deadline else None,
                    "default": default,
                },
            )
        if approval.status is not ApprovalStatus.PENDING:
            return approval
        if on_pending is not None:
            await on_pending()
        future = self._waiters.get(approval.id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[approval.id] = future
        try:
            while True:
                remaining = None if approval.deadline is None else (approval.deadline - datetime.now(UTC))
                wait = _POLL_S if remaining is None else min(_POLL_S, max(0.0, remaining.total_seconds()))
                if await wait_future(future, wait):  # not wait_for: a run cancelled as it is answered stays cancelled
                    return future.result()
                # Answered by a process that does not own this run (it wrote the row)?
                current = await self._current(approval.id)
                if current.status is not ApprovalStatus.PENDING:
                    if not current.announced:
                        # answered by a process that does not own this run: the event is ours to emit
                        self._announce(current, current.value, current.answered_by or "user")
                    return current
                if approval.deadline is not None and datetime.now(UTC) >= approval.deadline:
                    answered = await self._answer(approval, approval.default, by="deadline")
                    return answered or await self._current(approval.id)
        finally:
            self._waiters.pop(approval.id, None)

    async def answer(
        self, workflow: str, task: str, value: Any = True, *, deny: bool = False, by: str = "user", quiet: bool = False
    ) -> Approval:
        """Answer the open approval of ``task``; raises ``ControlError`` when there is none.

        ``quiet``: another process runs the workflow (and numbers its events): only the row is written, and the
        owner, which looks at it while it waits, announces the answer.
        """
        pending = [a for a in await self.stores.approvals.list(workflow, pending_only=True) if a.task == task]
        if not pending:
            asked = {a.task for a in await self.stores.approvals.list(workflow, pending_only=True)}
            hint = f" (waiting: {', '.join(sorted(asked))})" if asked else ""
            raise ControlError(f"task {task} of workflow {workflow} has no open approval{hint}")
        value = False if deny and value is True else value
        if quiet:
            stored = await self.stores.approvals.answer(
                pending[-1].id, status=status_for(value, deny), value=value, by=by, announced=False
            )
            if stored is None:
                raise ControlError(f"the approval of task {task} was answered meanwhile")
            return stored
        answered = await self._answer(pending[-1], value, by=by, deny=deny)
        if answered is None:
            raise ControlError(f"the approval of task {task} was answered meanwhile")
        return answered

    async def pending(self, workflow: str) -> list[Approval]:
        return await self.stores.approvals.list(workflow, pending_only=True)

    async def _current(self, approval_id: str) -> Approval:
        found = await self.stores.approvals.get(approval_id)
        if found is None:
            raise ControlError(f"approval {approval_id} vanished")
        return found

    async def _answer(self, approval: Approval, value: Any, *, by: str, deny: bool = False) -> Approval | None:
        status = status_for(value, deny)
        answered = await self.stores.approvals.answer(approval.id, status=status, value=value, by=by)
        if answered is None:
            return None
        self._announce(answered, value, by)
        future = self._waiters.get(approval.id)
        if future is not None and not future.done():
            future.set_result(answered)
        return answered

    def _announce(self, approval: Approval, value: Any, by: str) -> None:
        self.recorder.emit(
            approval.workflow,
            APPROVAL_ANSWER_EVENTS[approval.status],
            task=approval.task,
            data={
                "approval": approval.id,
                "value": value,
                "by": by,
                **({"default_applied": True} if by == "deadline" else {}),
            },
        )
