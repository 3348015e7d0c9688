"""A graph task's thread carried into a diverged workflow (*Diverge here*, ``engine.diverge``): a copy of the
source thread as it stood at the moment, on the new workflow's own thread, optionally with edited state.

**Which checkpoint.** The moment is an event ``seq``; the task's ``node.*`` events up to it say where its graph was
(``moment_of``): the thread of the newest node event and its step. When every node of that step had completed by
then, the graph stood at that step's checkpoint; otherwise (a node running, waiting at an ``interrupt()``,
failed or cancelled) at the step before, plus what the step's finished nodes had written, so they do not run
again, and the interrupts of the nodes waiting then, so the new workflow asks the same question. Steps repeat on
a thread that was forked (time travel), so among the checkpoints of that step the one taken by then is chosen
(LangGraph writes a step's checkpoint before the next step's nodes start).

**The copy.** The chosen checkpoint and its ancestors (root namespace) are stored on the new thread with
``aput``, each with its pending writes (``aput_writes``); for the chosen one only the writes made by the moment
are kept (writes of nodes that finished later, and answers to interrupts, are left behind). Any LangGraph saver
works: nothing but the saver's public interface is used. The source thread is only read. Edited ``values`` are
applied to the copy with ``aupdate_state`` (through the state's reducers, as time travel does), making a new
head; the graph continues from the head when the new workflow runs the task.

Limits: subgraph checkpoints (non-root namespaces) are not copied, so a subgraph that was mid-run starts over
inside its parent node; memories a graph remembered stay with the source workflow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import Event, EventType
from engine.graph.threads import ThreadSource, graph_for

_NODE_EVENTS = {
    EventType.NODE_STARTED.value,
    EventType.NODE_COMPLETED.value,
    EventType.NODE_FAILED.value,
    EventType.NODE_INTERRUPTED.value,
    EventType.NODE_CANCELLED.value,
}
_INTERRUPT = "__interrupt__"  # langgraph's INTERRUPT channel: the pending write an interrupt() leaves


@dataclass(frozen=True)
class GraphMoment:
    """Where a graph task's thread stood at an event: the checkpoint step to copy and what came on top of it."""

    thread: str
    step: int  # the graph step of the checkpoint to copy
    taken_by: datetime | None  # that checkpoint was written by then (None: no later node event bounds it)
    finished: frozenset[str] = field(default_factory=frozenset)  # nodes of the next step done by the moment
    waiting: frozenset[str] = field(default_factory=frozenset)  # nodes of the next step waiting at an interrupt


@dataclass(frozen=True)
class CarriedThread:
    """A graph task's thread copied into a diverged workflow: recorded in its ``workflow.created`` event and
    ``Workflow.diverged_from["threads"]``."""

    source_thread: str
    checkpoint: str  # the source checkpoint copied (the new thread's head unless edited)
    step: int
    thread: str  # the new workflow's thread
    head: str  # the new thread's head (a new checkpoint when values were edited)
    edited: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "from_thread": self.source_thread,
            "checkpoint": self.checkpoint,
            "step": self.step,
            "thread": self.thread,
            "head": self.head,
            "edited": self.edited,
        }


def moment_of(events: Sequence[Event], task: str, at_seq: int) -> GraphMoment | None:
    """Where ``task``'s graph stood at event ``at_seq`` (``events``: the workflow's, in seq order); None when no
    node of it had started by then."""
    mine = [e for e in events if e.task == task and e.type in _NODE_EVENTS]
    before = [e for e in mine if e.seq <= at_seq]
    if not before:
        return None
    last = before[-1]
    thread, step = str(last.data.get("thread")), int(last.data.get("step", 0))
    run: list[Event] = []  # the node events of that step, back to the one before it on the thread
    for event in reversed(before):
        if str(event.data.get("thread")) != thread or int(event.data.get("step", 0)) != step:
            break
        run.append(event)
    run.reverse()
    latest: dict[str, str] = {}
    for event in run:
        latest[str(event.data.get("node"))] = event.type
    if all(kind == EventType.NODE_COMPLETED for kind in latest.values()):
        later = [e for e in mine if e.seq > at_seq and str(e.data.get("thread")) == thread]
        return GraphMoment(thread, step, later[0].ts if later else None)
    return GraphMoment(
        thread,
        step - 1,
        run[0].ts,  # the step's checkpoint was written before its first node started
        frozenset(node for node, kind in latest.items() if kind == EventType.NODE_COMPLETED),
        frozenset(node for node, kind in latest.items() if kind == EventType.NODE_INTERRUPTED),
    )


async def carry_thread(
    engine: ThreadSource,
    workflow_id: str,
    task: str,
    moment: GraphMoment,
    target: str,
    values: dict[str, Any] | None = None,
) -> CarriedThread | None:
    """Copy ``task``'s thread as it stood at ``moment`` into the thread ``target`` (then apply ``values``); None
    when the source thread has no checkpoint of that step (it was deleted, or never stored here)."""
    graph, _config, _task = await graph_for(engine, workflow_id, task)
    saver = graph.checkpointer
    source = {"configurable": {"thread_id": moment.thread, "checkpoint_ns": ""}}
    stored = [t async for t in saver.alist(source)]  # newest first
    chosen = next((t for t in stored if _step(t) == moment.step and _taken_by(t, moment.taken_by)), None)
    if chosen is None:
        return None
    by_id = {_id(t.config): t for t in stored}
    chain = [chosen]
    while chain[-1].parent_config is not None and _id(chain[-1].parent_config) in by_id:
        chain.append(by_id[_id(chain[-1].parent_config)])
    chain.reverse()
    try:
        head = await _copy(saver, chain, target, await _writes_at_moment(graph, chosen, moment))
        if values:
            head = await graph.aupdate_state(head, values)
    except Exception:
        await saver.adelete_thread(target)  # a half copy would be resumed as if it were the thread
        raise
    return CarriedThread(
        source_thread=moment.thread,
        checkpoint=_id(chosen.config),
        step=moment.step,
        thread=target,
        head=_id(head),
        edited=sorted(values or {}),
    )


async def _copy(saver: Any, chain: list[Any], target: str, last_writes: list[Any]) -> dict[str, Any]:
    """Store ``chain`` (oldest first) on ``target`` with its pending writes (the last one's: ``last_writes``);
    returns the config of the last."""
    parent: str | None = None
    config: dict[str, Any] = {}
    for index, item in enumerate(chain):
        conf: dict[str, Any] = {"thread_id": target, "checkpoint_ns": ""}
        if parent is not None:
            conf["checkpoint_id"] = parent
        versions = dict(item.checkpoint.get("channel_versions") or {})
        config = await saver.aput({"configurable": conf}, item.checkpoint, item.metadata or {}, versions)
        writes = last_writes if index == len(chain) - 1 else list(item.pending_writes or [])
        by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for task_id, channel, value in writes:
            by_task[task_id].append((channel, value))
        for task_id, task_writes in by_task.items():
            await saver.aput_writes(config, task_writes, task_id)
        parent = _id(config)
    return config


async def _writes_at_moment(graph: Any, chosen: Any, moment: GraphMoment) -> list[Any]:
    """The pending writes of ``chosen`` that existed at the moment: those of the nodes that had finished, and the
    interrupts of those waiting. Writes made later (a node finishing after the moment, an answer) stay behind."""
    if not (moment.finished or moment.waiting) or not chosen.pending_writes:
        return []
    snapshot = await graph.aget_state(chosen.config)
    name_of = {t.id: t.name for t in snapshot.tasks}
    kept = []
    for task_id, channel, value in chosen.pending_writes:
        name = name_of.get(task_id)
        if name in moment.finished or (name in moment.waiting and channel == _INTERRUPT):
            kept.append((task_id, channel, value))
    return kept


def _id(config: Any) -> str:
    return str(config["configurable"]["checkpoint_id"])


def _step(item: Any) -> int:
    return int((item.metadata or {}).get("step", -2))


def _taken_by(item: Any, bound: datetime | None) -> bool:
    if bound is None:
        return True
    return datetime.fromisoformat(str(item.checkpoint["ts"])) <= bound
