"""The ``shell`` agent: runs the task's command in its sandbox and streams output line by line.

A command can talk back through its output: a line ``::progress::0.4 compiling`` reports progress, and
``::output::{"json": "value"}`` sets the task's output (otherwise the output is the exit code and the last
lines printed), and ``::remember::text`` (or ``::remember type=short_term::text``) stores a memory for the task's
agent, searchable by meaning (``agentdeck memory search``); at most ``MAX_MEMORIES`` per attempt, the task ends once
they are stored. Upstream outputs arrive as ``$AGENTDECK_INPUT`` (JSON: ``{"input": ..., "upstream": ...}``)
and in ``.agentdeck/input.json`` in the working directory.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from itertools import repeat
from typing import Any, ClassVar

from engine.agents.base import Agent, TaskContext
from engine.errors import TaskFailed

TAIL_LINES = 20
MAX_MEMORIES = 1_000  # per attempt: each costs an embedding (~2 ms), and a task's output is not to be trusted


class ShellAgent(Agent):
    kind: ClassVar[str] = "shell"

    async def run(self, ctx: TaskContext) -> Any:
        command = ctx.task.run
        if not command:
            raise TaskFailed(f"task {ctx.task.id} has no command to run")
        payload = json.dumps({"input": ctx.input, "upstream": ctx.upstream}, default=str)
        await ctx.sandbox.write_file(".agentdeck/input.json", payload)
        env = {
            **ctx.env,
            "AGENTDECK_WORKFLOW": ctx.workflow,
            "AGENTDECK_TASK": ctx.task.id,
            "AGENTDECK_ATTEMPT": str(ctx.attempt),
            "AGENTDECK_INPUT": payload,
        }
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        declared: list[Any] = []
        remembering: list[asyncio.Task[Any]] = []

        def on_lines(stream: str, lines: list[str]) -> None:
            if any(map(str.startswith, lines, repeat("::"))):  # rare; checked in C, no Python call per line
                lines = [line for line in lines if not _directive(line, ctx, declared, remembering)]
            if lines:
                tail.extend(lines[-TAIL_LINES:])
                ctx.emit_lines(stream, lines)

        result = await ctx.sandbox.run(
            command,
            on_lines=on_lines,
            env=env,
            redact=ctx.redact,
            network=ctx.task.network,
            readable=ctx.upstream_workdirs,
            timeout=None,
            backlog=ctx.output_backlog,  # output is read only as fast as it is stored
        )
        if remembering:
            await asyncio.gather(*remembering)  # the task is done when what it remembered is stored
        if result.exit_code != 0:
            last = tail[-1] if tail else ""
            raise TaskFailed(f"exit code {result.exit_code}" + (f": {last}" if last else ""))
        if declared:
            return declared[-1]
        return {"exit_code": 0, "tail": list(tail)}


def _directive(line: str, ctx: TaskContext, declared: list[Any], remembering: list[asyncio.Task[Any]]) -> bool:
    """Handle ``::progress::``, ``::output::`` and ``::remember::`` lines; returns whether ``line`` was one (it is
    then not shown)."""
    if line.startswith("::progress::"):
        value, _, message = line[len("::progress::") :].partition(" ")
        try:
            ctx.emit_progress(max(0.0, min(1.0, float(value))), message)
            return True
        except ValueError:
            return False
    if line.startswith("::output::"):
        try:
            declared.append(json.loads(line[len("::output::") :]))
            return True
        except json.JSONDecodeError:
            return False
    if line.startswith("::remember"):
        return _remember(line, ctx, remembering)
    return False


def _remember(line: str, ctx: TaskContext, remembering: list[asyncio.Task[Any]]) -> bool:
    """``::remember::text`` or ``::remember type=T::text``: store ``text`` as a memory of type ``T``."""
    head, sep, text = line[2:].partition("::")
    name, _, params = head.partition(" ")
    if name != "remember" or not sep or not text.strip():
        return False
    options = dict(part.partition("=")[::2] for part in params.split())
    # Here, not at the top: engine.memory loads numpy and the vector index, which `agentdeck validate` (it builds
    # every agent) has no use for.
    from engine.memory import MemoryInputError, check_type

    try:
        memory_type = check_type(options.get("type", "long_term"))
    except MemoryInputError as exc:
        ctx.emit_lines("stderr", [f"agentdeck: {line[:60]}: {exc}"])
        return True
    if len(remembering) >= MAX_MEMORIES:
        if len(remembering) == MAX_MEMORIES:
            ctx.emit_lines("stderr", [f"agentdeck: more than {MAX_MEMORIES} ::remember lines; the rest are shown only"])
            remembering.append(asyncio.ensure_future(asyncio.sleep(0)))
        return False
    remembering.append(asyncio.ensure_future(ctx.remember(text, memory_type)))
    return True
