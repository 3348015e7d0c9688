"""The approvals waiting for a person, as the dashboard knows them.

Two sources: what was already pending when the dashboard started (``Engine.approvals.pending``, loaded once per
workflow) and the ``approval.*`` events on the bus afterwards. The main screen shows the count (``✋ 1 waiting``),
opens the oldest approval nobody put off, and ``A`` opens the put-off ones again. No Textual here: this is only
the bookkeeping, so it can be read (and tested) without a screen.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from db.models import APPROVAL_ANSWER_EVENTS, Approval, Event, EventType

ANSWERED = frozenset(APPROVAL_ANSWER_EVENTS.values())


def approval_from_event(event: Event) -> Approval | None:
    """The approval an ``approval.requested`` event announces (its data carries every field the prompt shows)."""
    data = event.data
    approval_id = event.approval_id
    if event.task is None or approval_id is None:
        return None
    prefix = f"{event.workflow}/{event.task}/"
    deadline = data.get("deadline")
    return Approval(
        workflow=event.workflow,
        task=event.task,
        interrupt=approval_id.removeprefix(prefix),  # the id is "<workflow>/<task>/<interrupt>"
        node=data.get("node"),
        prompt=data.get("prompt"),
        default=data.get("default"),
        deadline=datetime.fromisoformat(deadline) if isinstance(deadline, str) else None,
        created_at=event.ts,
    )


class PendingApprovals:
    """Open approvals by id, oldest first; ``later`` holds the ones put off with ``escape``."""

    def __init__(self) -> None:
        self.pending: dict[str, Approval] = {}
        self.later: set[str] = set()
        self._answered: set[str] = set()  # so a load that read before an answer does not bring it back

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, approvals: Iterable[Approval]) -> None:
        for approval in approvals:
            if approval.id not in self._answered and approval.id not in self.pending:
                self.pending[approval.id] = approval

    def consume(self, events: Iterable[Event]) -> list[tuple[str, dict[str, Any]]]:
        """Take what the events say; returns (approval id, event data) of each answer among them."""
        answers = []
        for event in events:
            if event.type == EventType.APPROVAL_REQUESTED:
                approval = approval_from_event(event)
                if approval is not None:
                    self.add([approval])
            elif event.type in ANSWERED:
                approval_id = str(event.approval_id)
                self.answered(approval_id)
                answers.append((approval_id, {**event.data, "status": event.type.removeprefix("approval.")}))
        return answers

    def answered(self, approval_id: str) -> None:
        self._answered.add(approval_id)
        self.pending.pop(approval_id, None)
        self.later.discard(approval_id)

    def next_to_show(self, workflow: str | None = None) -> Approval | None:
        """The oldest approval not put off, of ``workflow`` first when one is given."""
        waiting = sorted((a for a in self.pending.values() if a.id not in self.later), key=lambda a: a.created_at)
        preferred = [a for a in waiting if a.workflow == workflow]
        return next(iter(preferred or waiting), None)

    def put_off(self, approval_id: str) -> None:
        if approval_id in self.pending:
            self.later.add(approval_id)

    def bring_back(self) -> None:
        """Every put-off approval may be shown again (``A``)."""
        self.later.clear()
