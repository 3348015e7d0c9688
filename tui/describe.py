"""How an event reads to a person: one icon, a short text and a style name per event, for every ``EventType``.

The dashboard's event log and the headless human printer (``run --headless`` without ``--json``) both describe
events through ``describe``, so an event looks the same wherever it is shown: the log colours its type column with
``style`` and puts ``text`` after the task; the printer writes ``icon``, the task and what happened, then ``text``.
Each renders its own layout around these. ``routine`` names the types a person following a run in a terminal does
not need to see scroll by (the dashboard shows them in its panes, tree and charts; its event log shows all).

No Textual here (the headless command line imports this); styles are Rich colour names.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from db.models import Event, EventType


class Description(NamedTuple):
    """An event as a person reads it."""

    icon: str  #: one glyph: ▶ started, ✔ completed, ✘ failed, ■ cancelled, ↻ retrying, ✋ waiting for a person...
    text: str  #: the short details: an output chunk's first line, else the notable data as ``key=value``
    style: str  #: a Rich style name for the event's type ("" for the default)


class _Look(NamedTuple):
    icon: str
    style: str = ""
    routine: bool = False


#: Keyed by members; looked up with ``Event.type``, a plain string (a member hashes and equals as its string).
_LOOKS: dict[str, _Look] = {
    EventType.WORKFLOW_CREATED: _Look("◆", "cyan"),
    EventType.WORKFLOW_STARTED: _Look("▶", "cyan"),
    EventType.WORKFLOW_PAUSED: _Look("⏸", "yellow"),
    EventType.WORKFLOW_RESUMED: _Look("▶", "cyan"),
    EventType.WORKFLOW_COMPLETED: _Look("✔", "green3"),
    EventType.WORKFLOW_FAILED: _Look("✘", "red"),
    EventType.WORKFLOW_CANCELLED: _Look("■", "magenta"),
    EventType.WORKFLOW_ROLLED_BACK: _Look("↺", "cyan"),
    EventType.WORKFLOW_STOPPED: _Look("⏹", "grey70"),
    EventType.TASK_QUEUED: _Look("•", routine=True),
    EventType.TASK_STARTED: _Look("▶"),
    # Output has no glyph: its lines sit where other rows' text starts.
    EventType.TASK_OUTPUT: _Look(" "),
    EventType.TASK_PROGRESS: _Look("•", routine=True),  # the pane's progress bar shows it
    EventType.TASK_PAUSED: _Look("⏸", "yellow"),
    EventType.TASK_RESUMED: _Look("▶"),
    EventType.TASK_WAITING: _Look("✋"),
    EventType.TASK_RETRYING: _Look("↻", "orange1"),
    EventType.TASK_ASSIGNED: _Look("⇢"),  # which worker runs it (the pane's header names it too)
    EventType.TASK_COMPLETED: _Look("✔", "green3"),
    EventType.TASK_FAILED: _Look("✘", "red"),
    EventType.TASK_CANCELLED: _Look("■", "magenta"),
    EventType.TASK_SKIPPED: _Look("·"),
    EventType.CHECKPOINT_CREATED: _Look("•", routine=True),
    EventType.MEMORY_WRITTEN: _Look("•"),
    EventType.APPROVAL_REQUESTED: _Look("✋"),
    EventType.APPROVAL_GRANTED: _Look("✋"),
    EventType.APPROVAL_DENIED: _Look("✋"),
    EventType.APPROVAL_ANSWERED: _Look("✋"),
    EventType.GRAPH_FORKED: _Look("•"),
    # A graph task's pane lines already say which node runs.
    EventType.NODE_STARTED: _Look("•", routine=True),
    EventType.NODE_COMPLETED: _Look("•", "green3", routine=True),
    EventType.NODE_FAILED: _Look("•", "red", routine=True),
    EventType.NODE_INTERRUPTED: _Look("•", routine=True),
    EventType.NODE_CANCELLED: _Look("•", "magenta", routine=True),
    EventType.LLM_USAGE: _Look("•", routine=True),  # summed in the pane header, status bar and metrics
    EventType.TOOL_CALLED: _Look("•", routine=True),  # the pane shows the command (``$ …`` on stream tool)
    EventType.WATCHPOINT_ADDED: _Look("◎"),
    EventType.WATCHPOINT_REMOVED: _Look("◎"),
    EventType.WATCHPOINT_TRIGGERED: _Look("◉", "yellow"),  # says why the workflow paused
    EventType.METRIC: _Look("•", routine=True),
}

#: How a type outside the vocabulary (an agent's own, or one an older version stored) is coloured: by how its name
#: ends, as the members are.
_STYLE_BY_ENDING = {
    "completed": "green3",
    "failed": "red",
    "cancelled": "magenta",
    "paused": "yellow",
    "retrying": "orange1",
}

#: The data keys worth a word in a one-line description, shown as ``key=value`` in the data's order.
_NOTABLE = frozenset(("attempt", "error", "reason", "progress", "number", "failed", "delay_s", "when"))


def _look(event_type: str) -> _Look:
    look = _LOOKS.get(event_type)
    if look is not None:
        return look
    ending = event_type.split(".", 1)[-1]
    return _Look("•", _STYLE_BY_ENDING.get(ending, "cyan" if event_type.startswith("workflow") else ""))


def describe(event: Event) -> Description:
    """The icon, short text and style of ``event`` (a type outside ``EventType`` gets ``•``)."""
    look = _look(event.type)
    if event.type == EventType.TASK_OUTPUT:
        lines = event.output_lines
        text = lines[0] if lines else ""
    else:
        own = _in_words(event)
        text = own if own is not None else " ".join(
            f"{k}={v}" for k, v in event.data.items() if k in _NOTABLE and v not in (None, "", [])
        )  # fmt: skip
    return Description(look.icon, text, look.style)


#: A tool call's arguments in its description, at most (the event in full shows them all).
TOOL_ARGS_CHARS = 80
_WATCH_TYPES = {EventType.WATCHPOINT_ADDED, EventType.WATCHPOINT_REMOVED, EventType.WATCHPOINT_TRIGGERED}


def _in_words(event: Event) -> str | None:
    """Watchpoint, worker and tool-call events in words: which watchpoint (name and expression, the task it is scoped
    to) and, for a trigger, why; which worker took a command; which tool with which arguments (cut short). None for
    other types."""
    data = event.data
    if event.type in _WATCH_TYPES:
        when = str(data.get("when") or "")
        if event.type == EventType.WATCHPOINT_TRIGGERED:  # the reason names the conditions that held
            by = f" by {data['name']}" if data.get("name") else ""
            return f"paused{by}: {data.get('reason') or when}"
        label = f"{data['name']}: {when}" if data.get("name") else when
        label += f" (task {data['scope']})" if data.get("scope") else ""
        return label + (f": {data['reason']}" if data.get("reason") else "")  # removed by the engine: why
    if event.type == EventType.TASK_ASSIGNED:
        return f"on worker {data.get('worker', '?')}"
    if event.type == EventType.TOOL_CALLED:
        args = json.dumps(data.get("args"), default=str, separators=(",", ":")) if data.get("args") else ""
        args = args if len(args) <= TOOL_ARGS_CHARS else args[: TOOL_ARGS_CHARS - 1] + "…"
        return f"{data.get('tool', '?')} {args}".rstrip()
    return None


def routine(event_type: str) -> bool:
    """Whether a person following a run in a terminal can do without seeing events of this type scroll by."""
    return _look(event_type).routine


def described_types() -> frozenset[str]:
    """The event types with a look of their own: every ``EventType`` member (a unit test holds that)."""
    return frozenset(_LOOKS)
