"""Subscriptions: the gap-refilling logic every bus transport shares.

A bus fans events out to subscribers as they happen. It is allowed to lose them — a subscriber's queue overflows,
Redis pub/sub drops messages while a subscriber is disconnected — because every event carries a per-workflow,
gap-free ``seq`` and is persisted by the engine: a subscription tracks the last seq it delivered per workflow and
refills anything missing from the ``EventStore`` before delivering what comes after it. So a subscriber sees each
workflow's events in seq order, each once and none missing (unless the store does not have them within
``refill_timeout``: then it reports them lost and goes on), and the publisher never waits for it.

How a subscription knows what it missed (see ``_inbox``): the transport queues *sync points* in its inbox — on
overflow, on (re)connect, and at the start — each naming the highest seq published per workflow before that
point. Everything up to a sync point that was not queued before it will never arrive live, so the subscription
refills it from the store right away; a live event whose seq jumps ahead says the same about the seqs between.
Refills go a page at a time, interleaved with nothing else, so a long history replay streams in order.

Where a subscriber joins a workflow it has not seen yet: where the publisher was when the subscription started
(START marks), or, for a workflow the publisher had not published then, at its first live event — unless the
connection dropped since, in which case from seq 1 (it may have started while we were away). Not "from seq 1"
always: a workflow resumed after a restart continues its seqs on a bus that never saw the earlier ones.

What a UI can show: ``Subscription.dropped`` / ``refilled`` count events missed live and recovered from the store,
and every gap produces a ``GapNotice`` ("dropped 40 events, refilled 40 from the database"), kept in
``Subscription.notices`` and handed to the ``on_notice`` callback given to ``subscribe``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from db.models import Event
from db.stores import EventStore
from engine.bus._inbox import Inbox, SyncKind, SyncPoint

log = logging.getLogger(__name__)

Flush = Callable[[], Awaitable[None]]
"""The engine's "persist the events you buffered, now" (``EventRecorder.flush``)."""

NoticeCallback = Callable[["GapNotice"], None]

# Events a subscriber may fall behind before it drops (and refills from the store). Events are published a
# stored batch at a time, and a batch can hold thousands, so this must hold a few batches.
DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_REFILL_TIMEOUT_S = 5.0
_REFILL_PAGE = 1000
_RETRY_FIRST_S = 0.01
_RETRY_MAX_S = 0.5
_NOTICES_KEPT = 100


class BusUnavailable(Exception):
    """The bus's transport cannot be reached (Redis down, bad URL); the CLI maps it to exit code 3.

    Attributes:
        hint: one line telling the user what to do about it.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class GapNotice:
    """A subscriber missed events live; says how many came back from the store.

    ``str(notice)`` is the line a UI shows, e.g. ``wf-1: dropped 40 events (seq 101-140), refilled 40 from the
    database``.
    """

    workflow: str
    first_seq: int
    last_seq: int
    missed: int
    refilled: int

    @property
    def lost(self) -> int:
        """Events neither delivered live nor found in the store (given up on after the refill timeout)."""
        return self.missed - self.refilled

    def __str__(self) -> str:
        text = (
            f"{self.workflow}: dropped {self.missed} events (seq {self.first_seq}-{self.last_seq}), "
            f"refilled {self.refilled} from the database"
        )
        return f"{text}, {self.lost} lost" if self.lost else text


@dataclass
class _Refill:
    """A gap being refilled from the store: seqs ``cursor+1 .. upto`` of one workflow, a chunk at a time."""

    workflow: str
    cursor: int  # refilled (or given up on) up to here
    upto: int
    missed_after: int  # seqs above this were missed live and count as dropped; the rest is history replay
    deadline: float | None = None  # what is still missing after it is given up; renewed after each full chunk
    recovered: int = 0

    @property
    def missed(self) -> int:
        return max(0, self.upto - self.missed_after)


class Subscription(AsyncIterator[Event]):
    """A stream of events: ``async for event in sub``; ``async with bus.subscribe(...) as sub`` waits until it is
    live and closes it on the way out.

    Events come in seq order per workflow, each once. One task iterates a subscription; ``close()`` (from any
    task) ends the iteration and stops the subscription's background work.

    Attributes:
        workflow: the workflow followed, or None for all of them.
        dropped: events this subscriber missed live (its queue overflowed, or the transport lost them).
        refilled: how many of those were recovered from the ``EventStore`` and delivered in their place.
        duplicates: events received again after they were delivered (and skipped).
        notices: the latest ``GapNotice``s, oldest first (bounded); a UI may pop them as it shows them.
        on_notice: called with each ``GapNotice`` when the refill of a gap is done (its events are next).
    """

    def __init__(
        self,
        workflow: str | None,
        after_seq: int | None,
        *,
        store: EventStore | None,
        flush: Flush | None,
        queue_size: int,
        refill_timeout: float,
        on_notice: NoticeCallback | None = None,
    ) -> None:
        if after_seq is not None and workflow is None:
            raise ValueError("after_seq needs a workflow: seqs are per workflow")
        if after_seq is not None and store is None:
            raise ValueError("after_seq needs an EventStore to replay history from")
        self.workflow = workflow
        self.dropped = 0
        self.refilled = 0
        self.duplicates = 0
        self.notices: deque[GapNotice] = deque(maxlen=_NOTICES_KEPT)
        self.on_notice = on_notice
        self._after_seq = after_seq
        self._store = store
        self._flush = flush
        self._refill_timeout = refill_timeout
        self._inbox = Inbox(queue_size)
        self._ready_to_send: deque[Event] = deque()
        self._work: deque[_Refill | Event] = deque()  # gaps to refill and the live events queued behind them
        # The last seq delivered per workflow; and, from the START sync point, the publisher's marks when the
        # subscription went live: seqs up to those are history (replayed for after_seq, never counted dropped).
        self._last: dict[str, int] = {} if after_seq is None or workflow is None else {workflow: after_seq}
        self._history: dict[str, int] = {}
        self._started = False
        self._disconnected = False  # between a DISCONNECTED and the RECONNECT sync point
        self._closed = False
        self._error: BaseException | None = None

    # -- iteration -------------------------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ready_to_send:
                return self._ready_to_send.popleft()
            if self._work:
                await self._advance()
                continue
            item = await self._inbox.get()
            if item is None:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            if isinstance(item, Event):
                await self._accept(item)
            else:
                await self._on_sync(item)

    async def wait_ready(self) -> None:
        """Return once events published from now on reach this subscription (raises ``BusUnavailable``)."""
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """Stop receiving: end the iteration and stop background work. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._inbox.close()
        await self._stop_transport()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        try:
            await self.wait_ready()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- for transports --------------------------------------------------------------------------------------

    async def _stop_transport(self) -> None:
        """Release what the transport holds for this subscription (tasks, connections)."""

    def _fail(self, error: BaseException) -> None:
        """The transport cannot go on: the consumer gets ``error`` from its next ``__anext__``."""
        self._error = error
        self._inbox.close()

    def _wants(self, workflow: str) -> bool:
        return self.workflow is None or workflow == self.workflow

    # -- ordering, dedup and gap refill ----------------------------------------------------------------------

    async def _accept(self, event: Event) -> None:
        workflow = event.workflow
        if not self._wants(workflow):
            return
        last = self._last.get(workflow)
        if last is None:
            last = self._joined_at(workflow, event.seq)
        if event.seq <= last:
            self.duplicates += 1
            return
        if event.seq > last + 1:
            # Per-workflow delivery is ordered, so the seqs in between will not come live any more.
            self._queue_refill(workflow, last, event.seq - 1)
        if self._work:
            self._work.append(event)
        else:
            self._ready_to_send.append(event)
        self._last[workflow] = event.seq

    def _joined_at(self, workflow: str, first_seen: int) -> int:
        """The seq this subscriber counts as already seen of a workflow it meets for the first time.

        See "Where a subscriber joins a workflow" in the module docstring.
        """
        if self._started and workflow in self._history:
            return self._history[workflow]
        if self._disconnected:
            return 0
        return first_seen - 1

    async def _on_sync(self, point: SyncPoint) -> None:
        if point.kind is SyncKind.DISCONNECTED:
            self._disconnected = True
            return
        marks = {wf: seq for wf, seq in point.marks.items() if self._wants(wf)}
        if point.kind is SyncKind.START:
            self._history.update(marks)
            if self._after_seq is not None and self.workflow is not None and self._store is not None:
                # A fresh bus (e.g. a dashboard attached after a restart) has published nothing: the stored
                # history is then what to replay.
                stored = await self._stored_last_seq(self.workflow)
                marks[self.workflow] = self._history[self.workflow] = max(marks.get(self.workflow, 0), stored)
            self._started = True
        for workflow, mark in sorted(marks.items()):
            last = self._last.get(workflow)
            if last is None:  # no event of this workflow delivered yet
                if workflow in point.first:  # an overflow dropped its first events that reached us
                    last = self._joined_at(workflow, point.first[workflow])
                elif self._started and workflow in self._history:
                    last = self._history[workflow]
                elif point.kind is SyncKind.RECONNECT:
                    last = 0  # unknown to the publisher at START: it began, all of it, while we were away
                else:
                    continue  # nothing says where this subscriber joined that workflow
            if mark > last:
                self._queue_refill(workflow, last, mark)
        if point.kind is not SyncKind.OVERFLOW:
            self._disconnected = False  # START or RECONNECT: live again

    def _queue_refill(self, workflow: str, after: int, upto: int) -> None:
        """Owe seqs ``after+1 .. upto`` of ``workflow`` from the store, ahead of anything that comes later."""
        history = self._history.get(workflow, 0) if self._started else self._unstarted_history()
        job = _Refill(workflow, cursor=after, upto=upto, missed_after=max(after, history))
        self.dropped += job.missed  # counted when noticed, so a UI sees it before the refill is done
        self._work.append(job)
        self._last[workflow] = upto

    def _unstarted_history(self) -> int:
        # Before START an after_seq subscription is still replaying history; a live-only one has already joined.
        return sys.maxsize if self._after_seq is not None else 0

    async def _advance(self) -> None:
        """Do the next piece of queued work: hand over a live event, or refill the next chunk of a gap."""
        job = self._work[0]
        if isinstance(job, Event):
            self._work.popleft()
            self._ready_to_send.append(job)
            return
        loop = asyncio.get_running_loop()
        if job.deadline is None:
            job.deadline = loop.time() + self._refill_timeout
        # Chunk by chunk, so replaying a long history streams instead of loading it all first.
        end = min(job.upto, job.cursor + _REFILL_PAGE)
        found = await self._fetch(job.workflow, job.cursor, end, job.deadline)
        events = [found[seq] for seq in sorted(found)]
        self._ready_to_send.extend(events)
        recovered = sum(1 for event in events if event.seq > job.missed_after)
        job.recovered += recovered
        self.refilled += recovered
        if len(found) == end - job.cursor:
            job.deadline = None  # progress: the next chunk gets the full timeout again
        replayable = max(0, min(end, job.missed_after) - job.cursor)
        replay_lost = replayable - (len(events) - recovered)
        if replay_lost > 0:
            log.warning("%s: %d stored events up to seq %d could not be read", job.workflow, replay_lost, end)
        job.cursor = end
        if job.cursor >= job.upto:
            self._work.popleft()
            if job.missed:
                self._notify(GapNotice(job.workflow, job.missed_after + 1, job.upto, job.missed, job.recovered))

    async def _fetch(self, workflow: str, after: int, upto: int, deadline: float) -> dict[int, Event]:
        """Read seqs ``after+1 .. upto`` from the store, flushing first and retrying until all are there.

        Events are persisted in batches after they are published, so a just-missed event may not be stored yet:
        ask the engine to flush (when it gave us a ``flush``), and keep re-reading until ``deadline``. Then give
        up on the rest — a stalled subscriber is worse than a gap it reports.
        """
        found: dict[int, Event] = {}
        if self._store is None:
            return found
        loop = asyncio.get_running_loop()
        delay = _RETRY_FIRST_S
        cursor = after
        while not self._closed:
            if self._flush is not None:
                try:
                    await self._flush()
                except Exception:
                    log.exception("flushing events before a refill failed")
            try:
                await self._read_range(workflow, cursor, upto, found)
            except Exception:  # the store being briefly unreachable must not end the subscription
                log.exception("reading events %s after %d for a refill failed", workflow, cursor)
            missing = next((seq for seq in range(cursor + 1, upto + 1) if seq not in found), None)
            if missing is None:
                break
            cursor = missing - 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("%s: events %d-%d are not in the store; giving up on them", workflow, missing, upto)
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _RETRY_MAX_S)
        return found

    async def _read_range(self, workflow: str, after: int, upto: int, found: dict[int, Event]) -> None:
        assert self._store is not None
        cursor = after
        while cursor < upto:
            want = min(_REFILL_PAGE, upto - cursor)
            page = await self._store.list(workflow, after_seq=cursor, limit=want)
            for event in page:
                if after < event.seq <= upto:
                    found.setdefault(event.seq, event)
            if len(page) < want:
                return
            cursor = page[-1].seq

    async def _stored_last_seq(self, workflow: str) -> int:
        assert self._store is not None
        if self._flush is not None:
            try:
                await self._flush()
            except Exception:
                log.exception("flushing events before a replay failed")
        try:
            return await self._store.last_seq(workflow)
        except Exception:
            log.exception("reading the last stored seq of %s failed", workflow)
            return 0

    def _notify(self, notice: GapNotice) -> None:
        log.info("event subscription: %s", notice)
        self.notices.append(notice)
        if self.on_notice is not None:
            try:
                self.on_notice(notice)
            except Exception:  # a UI callback bug must not end the event stream
                log.exception("on_notice callback failed")
