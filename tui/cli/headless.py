"""Running workflows without the dashboard: ``run --headless``, ``resume``, and foreground control runs.

With ``--json`` stdout carries one JSON event per line and nothing else (the first is ``workflow.created``);
human messages go to stderr. Ctrl-C (or SIGTERM) cancels the workflow for real — its processes are killed — and
exits with 130; the workflow stays resumable with ``agentdeck resume``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from db import connect
from db.models import APPROVAL_ANSWER_EVENTS, Event, EventType, WorkflowStatus
from engine.control import ControlChannels
from engine.engine import Engine
from tui.cli._common import EXIT_INTERRUPTED, EXIT_OK, EXIT_WORKFLOW_FAILED, db_url_or_default
from tui.describe import describe, routine

_ANSWERS = frozenset(APPROVAL_ANSWER_EVENTS.values())


def human_line(event: Event) -> str | None:
    """Readable text for an event (a line; an output chunk gives one line per output line), or None for the
    events a person does not need to see scroll by. Icons and details come from ``tui.describe``, as in the
    dashboard's event log."""
    stamp = event.ts.strftime("%H:%M:%S")
    look = describe(event)
    if event.type == EventType.TASK_OUTPUT:
        return "\n".join(f"{stamp} {look.icon} {event.task} │ {line}" for line in event.output_lines) or None
    if routine(event.type):
        return None
    if event.type == EventType.APPROVAL_REQUESTED:
        deadline = event.data.get("deadline")
        when = f" (default {json.dumps(event.data.get('default'))} at {str(deadline)[11:19]} UTC)" if deadline else ""
        return (
            f"{stamp} {look.icon} {event.task} asks: {event.data.get('question')}{when}\n"
            f"         answer: agentdeck workflows approve {event.workflow} --task {event.task} [--value V | --deny]"
        )
    if event.type == EventType.WATCHPOINT_TRIGGERED:
        subject = f" {event.task}" if event.task else ""
        return (
            f"{stamp} {look.icon}{subject} watchpoint {event.data.get('when')!r} paused the workflow: "
            f"{event.data.get('reason')}\n"
            f"         resume: agentdeck workflows resume {event.workflow}   remove it: agentdeck workflows watch "
            f"{event.workflow} --remove {event.data.get('watchpoint')}"
        )
    if event.type in _ANSWERS:
        by = event.data.get("by")
        answer = event.type.split(".", 1)[1]
        return f"{stamp} {look.icon} {event.task} {answer}: {json.dumps(event.data.get('value'))} by {by}"
    subject = f"{event.task} " if event.task else ""
    what = event.type.split(".", 1)[-1]  # "task.completed" -> "completed"; an agent's own "hello" stays "hello"
    return f"{stamp} {look.icon} {subject}{what}" + (f"  {look.text}" if look.text else "")


def make_printer(as_json: bool, out: TextIO = sys.stdout) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if as_json:
            out.write(json.dumps(event.to_json_dict(), default=str) + "\n")
            out.flush()
            return
        line = human_line(event)
        if line is not None:
            out.write(line + "\n")
            out.flush()

    return show


def exit_code_for(status: WorkflowStatus) -> int:
    return EXIT_OK if status is WorkflowStatus.COMPLETED else EXIT_WORKFLOW_FAILED


async def run_in_foreground(
    db_url: str | None,
    redis_url: str | None,
    as_json: bool,
    start: Callable[[Engine], Awaitable[str]],
) -> int:
    """Open the DB, start an engine (serving the control socket), start a workflow with ``start``, wait for it.

    Ctrl-C (or SIGTERM) cancels the workflow; before the workflow exists (storing 50,000 tasks takes a while) it
    stops ``start`` instead. A second Ctrl-C stops waiting for the cancellation to finish: the engine closes, the
    workflow stays resumable, and the exit code is 130 either way.
    """
    url = db_url_or_default(db_url)
    signals = 0
    async with connect(url) as db, Engine(db, redis_url=redis_url) as engine:
        engine.recorder.add_listener(make_printer(as_json))
        channels = ControlChannels(engine, url)
        await channels.start()
        loop = asyncio.get_running_loop()
        workflow_id: list[str] = []
        cancelling: set[asyncio.Task[None]] = set()
        current: list[asyncio.Future[Any]] = []  # what the command awaits now: starting, then waiting

        def cancel_workflow(reason: str) -> None:
            print(f"agentdeck: {reason}: cancelling the workflow", file=sys.stderr)
            task = loop.create_task(engine.cancel(workflow_id[0]))
            cancelling.add(task)
            task.add_done_callback(cancelling.discard)

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            name = signal.Signals(signum).name
            if workflow_id and signals == 1:
                cancel_workflow(name)
            elif workflow_id:
                print(f"agentdeck: {name}: not waiting for the cancellation", file=sys.stderr)
                engine.abandon()  # close stores only the write under way; the workflow stays resumable
                current[-1].cancel()
            elif current and current[-1].cancel():
                print(f"agentdeck: {name}: stopping before the workflow starts", file=sys.stderr)
            # else: starting has just finished; the workflow is cancelled as soon as its id is known (below)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            current.append(asyncio.ensure_future(start(engine)))
            workflow_id.append(await current[-1])
            print(
                f"agentdeck: workflow {workflow_id[0]} running — control it from another terminal with "
                f"`agentdeck workflows pause|resume|cancel {workflow_id[0]}`",
                file=sys.stderr,
            )
            if signals:  # Ctrl-C came while the workflow was being started, too late to stop that
                cancel_workflow("interrupted while starting")
            current.append(asyncio.ensure_future(engine.wait(workflow_id[0])))
            status = await current[-1]
        except asyncio.CancelledError:
            if not (signals and current and current[-1].cancelled()):
                raise  # not ours: someone cancelled this command
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await channels.close()
    if signals:
        return EXIT_INTERRUPTED
    print(f"agentdeck: workflow {workflow_id[0]} {status.value}", file=sys.stderr)
    return exit_code_for(status)
