"""The engine's watchpoints: armed for the workflows it runs, fed every stored event, pausing when one triggers.

``WatchManager`` listens to the event recorder (called after each commit, in order) and hands each event only to
the watchpoints of its workflow that read its type, so an event no watchpoint cares about costs two dictionary
lookups. Evaluation is synchronous and never waits; a trigger records ``watchpoint.triggered`` at once and pauses
the workflow in a task of its own, through the run's normal pause (shell processes frozen, graphs drained at the
step boundary).

A watchpoint does not trigger again while the workflow is paused by it; ``workflow.resumed`` re-arms it. Nor does
one trigger while the workflow is paused otherwise (by the user, or another watchpoint): one that would have is
checked again on ``workflow.resumed``, and triggers then if its expression still holds (a budget crossed by a call
that ended during the pause does; an output match, true only for its own line, does not). A workflow being
cancelled or ending is not paused.

An output watchpoint whose regex takes longer than ``REGEX_TIMEOUT_S`` (50 ms) on one chunk of output is disarmed
and forgotten at once (``watchpoint.removed`` with a ``reason``): such a pattern backtracks too much on such lines and
would cost as much on each chunk, holding up every workflow of the engine; the workflow goes on, unwatched by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from db.models import Event, EventType, Task, Watchpoint
from db.stores import Stores
from engine.errors import ControlError
from engine.events import EventRecorder
from engine.spec import WorkflowSpec
from engine.spec.watch_expr import parse_watch
from engine.watch.conditions import OutputScreen, OutputState, RegexTimeout
from engine.watch.evaluate import Outcome, WatchEvaluator

log = logging.getLogger(__name__)

__all__ = ["WatchManager", "triggered_data"]

_ENDS = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED, EventType.WORKFLOW_STOPPED}
)

#: The events some condition's state is rebuilt from on a resume (``WatchEvaluator.history_types``).
_COUNTED = frozenset(
    {EventType.LLM_USAGE, EventType.TOOL_CALLED, EventType.NODE_STARTED, EventType.TASK_FAILED,
     EventType.TASK_RETRYING}
)  # fmt: skip
_HISTORY_PAGE = 2_000


class _Run(Protocol):
    """What the manager uses of a live run (``engine.run.WorkflowRun``)."""

    @property
    def ending(self) -> bool: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def tasks(self) -> dict[str, Task]: ...


@dataclass
class _Armed:
    watchpoint: Watchpoint
    evaluator: WatchEvaluator
    #: It paused the workflow (or found it paused) and waits for ``workflow.resumed`` before triggering again.
    paused_it: bool = False
    #: It held while the workflow was paused (by the user, or another watchpoint): checked again on resume.
    held_back: bool = False
    #: Its evaluation raised once (logged then; not again for each event).
    failed: bool = False


def triggered_data(watchpoint: Watchpoint, outcome: Outcome) -> dict[str, Any]:
    """The data of a ``watchpoint.triggered`` event (the contract the dashboard reads).

    ``watchpoint``: its id; ``when``: the expression; ``name``: its name or None; ``scope``: the task it is declared
    on or None; ``task``: the task it concerns (also the event's ``task``); ``conditions``: each condition that
    holds, ``{condition, kind, values, task}``; ``reason``: one line saying why, for people.
    """
    parts = []
    for held in outcome.held:
        shown = ", ".join(f"{key}={value}" for key, value in held.values.items() if key not in ("limit", "pattern"))
        parts.append(f"{held.condition} ({shown})")
    return {
        "watchpoint": watchpoint.id,
        "when": watchpoint.when,
        "name": watchpoint.name,
        "scope": watchpoint.task,
        "task": outcome.task,
        "conditions": [held.to_json() for held in outcome.held],
        "reason": "; ".join(parts),
    }


class WatchManager:
    """Watchpoints armed in one engine, by workflow.

    Args:
        recorder: the engine's event recorder (listened to; ``watchpoint.*`` events are emitted through it).
        stores: where watchpoints are kept.
        runs: the engine's live runs by workflow id.
        pause: pauses a workflow through the engine's controls.
    """

    def __init__(
        self,
        recorder: EventRecorder,
        stores: Stores,
        runs: Mapping[str, _Run],
        pause: Callable[[str], Awaitable[None]],
    ) -> None:
        self._recorder = recorder
        self._stores = stores
        self._runs = runs
        self._pause = pause
        self._armed: dict[str, dict[str, _Armed]] = {}
        self._by_type: dict[str, dict[str, list[_Armed]]] = {}
        #: Per workflow, the output screen and the watchpoints it answers for (``_index``).
        self._screens: dict[str, tuple[OutputScreen, frozenset[int]]] = {}
        #: Pauses started by watchpoints, and the workflow each pauses.
        self._pausing: dict[asyncio.Task[None], str] = {}
        self._storing: set[asyncio.Task[None]] = set()
        self._unhook = recorder.add_listener(self._on_event)

    # ---- arming -------------------------------------------------------------------------------------------

    @staticmethod
    def declared(workflow_id: str, spec: WorkflowSpec) -> list[Watchpoint]:
        """The watchpoints a workflow file declares (``watch:`` at workflow and task level), as rows to keep."""
        found = [
            Watchpoint(workflow=workflow_id, when=entry.when, name=entry.name, origin="file") for entry in spec.watch
        ]
        for task in spec.tasks:
            for entry in task.watch:
                found.append(
                    Watchpoint(workflow=workflow_id, when=entry.when, name=entry.name, task=task.id, origin="file")
                )
        return found

    def declare(self, workflow_id: str, spec: WorkflowSpec) -> list[Watchpoint]:
        """Arm the watchpoints a new workflow's file declares, and keep them (stored in the background: ``settle``
        waits for that). Synchronous, so they see the workflow's first event."""
        found = self.declared(workflow_id, spec)
        if not found:
            return []
        for watchpoint in found:
            self.arm(watchpoint)  # validated with the spec: it parses
        storing = asyncio.get_running_loop().create_task(
            self._store(found), name=f"agentdeck-watchpoints-{workflow_id}"
        )
        self._storing.add(storing)
        storing.add_done_callback(self._storing.discard)
        return found

    async def _store(self, watchpoints: list[Watchpoint]) -> None:
        try:
            for watchpoint in watchpoints:
                await self._stores.watchpoints.put(watchpoint)
        except Exception:  # armed all the same; only a resume elsewhere would miss them
            log.exception("storing the watchpoints of %s failed", watchpoints[0].workflow)

    async def settle(self) -> None:
        """Wait until the declared watchpoints of the workflows started so far are stored."""
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)

    async def seen(self, workflow_id: str) -> None:
        """Once every event of ``workflow_id`` emitted so far is stored and evaluated, and a pause a watchpoint
        started on it is in effect. Immediate when none is armed on it (``TaskContext.watched``)."""
        if not self._armed.get(workflow_id):
            return
        await self._recorder.flush()  # listeners see each event once it is stored, so this evaluates them
        pausing = [task for task, workflow in self._pausing.items() if workflow == workflow_id]
        if pausing:
            await asyncio.wait(pausing)  # not gather: a task cancelled while it waits must not cancel the pause

    def arm(self, watchpoint: Watchpoint) -> None:
        """Start evaluating ``watchpoint`` on its workflow's events from now on (replaces one with its id).

        Raises:
            WatchSyntaxError: its expression does not parse.
        """
        expr = parse_watch(watchpoint.when)
        self.disarm(watchpoint.workflow, watchpoint.id)
        workflow = watchpoint.workflow

        def on_timer(outcome: Outcome) -> None:
            self._trigger(armed, outcome)

        armed = _Armed(watchpoint, WatchEvaluator(expr, watchpoint.task, on_timer))
        self._armed.setdefault(workflow, {})[watchpoint.id] = armed
        self._index(workflow)

    async def arm_stored(self, workflow_id: str) -> list[Watchpoint]:
        """Arm the watchpoints kept for a workflow (it is resumed); one that no longer parses is skipped, logged.

        Each goes on from where it stood, not from zero: its state is rebuilt from the workflow's stored events
        (``WatchEvaluator.catch_up``), so a budget counts what was spent before the resume and a count what was
        counted, and what already held does not trigger again at once."""
        found = await self._stores.watchpoints.list(workflow_id)
        history = await self._history(workflow_id)  # read before arming: nothing is counted twice
        armed = []
        for watchpoint in found:
            try:
                self.arm(watchpoint)
            except ValueError:
                log.warning("watchpoint %s of %s does not parse; not armed", watchpoint.id, workflow_id, exc_info=True)
                continue
            evaluator = self._armed[workflow_id][watchpoint.id].evaluator
            for event in history:
                if event.type in evaluator.history_types:
                    evaluator.catch_up(event)
            armed.append(watchpoint)
        return armed

    async def _history(self, workflow_id: str) -> list[Event]:
        """The workflow's stored events a watchpoint's state is rebuilt from, oldest first (read page by page; only
        the kinds some condition counts are kept)."""
        kept: list[Event] = []
        after = 0
        while True:
            page = await self._stores.events.list(workflow_id, after_seq=after, limit=_HISTORY_PAGE)
            kept.extend(event for event in page if event.type in _COUNTED)
            if len(page) < _HISTORY_PAGE:
                return kept
            after = page[-1].seq

    def disarm(self, workflow_id: str, watchpoint_id: str | None = None) -> None:
        """Stop evaluating one watchpoint of a workflow (or all of them, its run ended)."""
        armed = self._armed.get(workflow_id)
        if armed is None:
            return
        gone = list(armed) if watchpoint_id is None else [watchpoint_id] if watchpoint_id in armed else []
        for key in gone:
            armed.pop(key).evaluator.close()
        if armed:
            self._index(workflow_id)
        else:
            self._armed.pop(workflow_id, None)
            self._by_type.pop(workflow_id, None)
            self._screens.pop(workflow_id, None)

    def armed(self, workflow_id: str) -> list[Watchpoint]:
        """The watchpoints evaluated now for a workflow."""
        return [armed.watchpoint for armed in self._armed.get(workflow_id, {}).values()]

    def _index(self, workflow_id: str) -> None:
        by_type: dict[str, list[_Armed]] = {}
        for armed in self._armed.get(workflow_id, {}).values():
            for kind in armed.evaluator.types:
                by_type.setdefault(kind, []).append(armed)
        self._by_type[workflow_id] = by_type
        # Output watchpoints whose patterns can be searched together: one search of a chunk for all of them.
        screened: list[_Armed] = []
        patterns = []
        for armed in by_type.get(EventType.TASK_OUTPUT, ()):
            states = armed.evaluator.states_of(EventType.TASK_OUTPUT)
            mine = [state.cond.pattern for state in states if isinstance(state, OutputState)]
            if mine and all(OutputScreen.screenable(p) for p in mine):
                screened.append(armed)
                patterns.extend(mine)
        if len(patterns) > 1:
            self._screens[workflow_id] = (OutputScreen(patterns), frozenset(map(id, screened)))
        else:
            self._screens.pop(workflow_id, None)

    async def close(self) -> None:
        self._unhook()
        await self.settle()
        for workflow_id in list(self._armed):
            self.disarm(workflow_id)
        for task in list(self._pausing):
            task.cancel()
        if self._pausing:
            await asyncio.gather(*self._pausing, return_exceptions=True)

    # ---- evaluating ---------------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        by_type = self._by_type.get(event.workflow)
        if by_type is None:
            return
        kind = event.type
        if kind == EventType.WORKFLOW_RESUMED:
            for armed in list(self._armed.get(event.workflow, {}).values()):
                armed.paused_it = False
                if armed.held_back:  # what still holds is told now (a budget would otherwise never be)
                    armed.held_back = False
                    outcome = armed.evaluator.holding()
                    if outcome is not None:
                        self._trigger(armed, outcome)
            return
        if kind in _ENDS:
            self.disarm(event.workflow)
            return
        interested = by_type.get(kind, ())
        screen = self._screens.get(event.workflow) if kind == EventType.TASK_OUTPUT else None
        if screen is not None and screen[0].clear(event, event.data.get("lines") or []):
            interested = [armed for armed in interested if id(armed) not in screen[1]]  # none of theirs can match
        for armed in list(interested):  # a copy: one giving up is disarmed meanwhile
            try:
                outcome = armed.evaluator.observe(event)
                if outcome is not None:
                    self._trigger(armed, outcome)
            except RegexTimeout as exc:
                self._give_up(armed, str(exc))
            except Exception:  # a bug in one watchpoint: the others, and the engine, go on
                if not armed.failed:
                    armed.failed = True
                    log.exception("watchpoint %s of %s failed on a %s event (logged once)",
                                  armed.watchpoint.id, event.workflow, kind)  # fmt: skip

    def _give_up(self, armed: _Armed, why: str) -> None:
        """An output watchpoint's regex is too slow for the output it is given (it would cost that much on every
        such chunk, holding up every workflow): disarmed and forgotten, and the user told why in
        ``watchpoint.removed`` (its ``reason``); the workflow goes on."""
        watchpoint = armed.watchpoint
        log.warning("watchpoint %s (%s) of %s: %s", watchpoint.id, watchpoint.when, watchpoint.workflow, why)
        self.disarm(watchpoint.workflow, watchpoint.id)
        data = {"watchpoint": watchpoint.id, "when": watchpoint.when, "name": watchpoint.name,
                "scope": watchpoint.task, "reason": why}  # fmt: skip
        self._recorder.emit(watchpoint.workflow, EventType.WATCHPOINT_REMOVED, data=data)
        forgetting = asyncio.get_running_loop().create_task(
            self._forget(watchpoint), name=f"agentdeck-watchpoint-forget-{watchpoint.id}"
        )
        self._storing.add(forgetting)
        forgetting.add_done_callback(self._storing.discard)

    async def _forget(self, watchpoint: Watchpoint) -> None:
        storing = [task for task in self._storing if task is not asyncio.current_task()]
        await asyncio.gather(*storing, return_exceptions=True)  # a declared one is stored before it is deleted
        try:
            await self._stores.watchpoints.delete(watchpoint.id)
        except Exception:  # disarmed all the same; a resume would arm it again (and give up again)
            log.warning("forgetting watchpoint %s failed", watchpoint.id, exc_info=True)

    def _trigger(self, armed: _Armed, outcome: Outcome) -> None:
        watchpoint = armed.watchpoint
        run = self._runs.get(watchpoint.workflow)
        if armed.paused_it or run is None or run.ending or run.cancelled:
            return  # nothing to pause: it is ending or being cancelled (a pause would hold up the cancel)
        if run.paused:  # paused by the user (or another watchpoint): no banner over it; checked again on resume
            armed.held_back = True
            return
        armed.paused_it = True
        watchpoint.triggered += 1
        watchpoint.last_triggered_at = datetime.now(UTC)
        task = outcome.task if outcome.task in run.tasks else None
        agent = run.tasks[task].agent if task is not None else None
        data = triggered_data(watchpoint, outcome)
        self._recorder.emit(watchpoint.workflow, EventType.WATCHPOINT_TRIGGERED, task=task, agent=agent, data=data)
        pausing = asyncio.get_running_loop().create_task(
            self._pause_for(watchpoint), name=f"agentdeck-watchpoint-{watchpoint.id}"
        )
        self._pausing[pausing] = watchpoint.workflow
        pausing.add_done_callback(self._pausing.pop)

    async def _pause_for(self, watchpoint: Watchpoint) -> None:
        try:
            await self._pause(watchpoint.workflow)
        except ControlError as exc:  # expected: its last output was stored as the run ended
            log.info("watchpoint %s triggered as %s finished; nothing to pause (%s)", watchpoint.id,
                     watchpoint.workflow, exc)  # fmt: skip
        except Exception:
            log.exception("watchpoint %s could not pause %s", watchpoint.id, watchpoint.workflow)
        with contextlib.suppress(Exception):  # the count is for people; the pause is what matters
            await self._stores.watchpoints.count_trigger(
                watchpoint.id, watchpoint.last_triggered_at or datetime.now(UTC)
            )
