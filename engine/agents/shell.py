"""The ``shell`` agent: runs the task's command in its sandbox and streams output line by line.

A command can talk back through its output: a line ``::progress::0.4 compiling`` reports progress, and
``::output::{"json": "value"}`` sets the task's output (otherwise the output is the exit code and the last
lines printed). Upstream outputs arrive as ``$AGENTDECK_INPUT`` (JSON: ``{"input": ..., "upstream": ...}``)
and in ``.agentdeck/input.json`` in the working directory.
"""

from __future__ import annotations

import json
from collections import deque
from itertools import repeat
from typing import Any, ClassVar

from engine.agents.base import Agent, TaskContext
from engine.errors import TaskFailed

TAIL_LINES = 20


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

        def on_lines(stream: str, lines: list[str]) -> None:
            if any(map(str.startswith, lines, repeat("::"))):  # rare; checked in C, no Python call per line
                lines = [line for line in lines if not _directive(line, ctx, declared)]
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
        if result.exit_code != 0:
            last = tail[-1] if tail else ""
            raise TaskFailed(f"exit code {result.exit_code}" + (f": {last}" if last else ""))
        if declared:
            return declared[-1]
        return {"exit_code": 0, "tail": list(tail)}


def _directive(line: str, ctx: TaskContext, declared: list[Any]) -> bool:
    """Handle ``::progress::`` and ``::output::`` lines; returns whether ``line`` was one (it is then not shown)."""
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
    return False
