"""The tools an ``llm`` agent can call, bound to one task: commands in its sandbox, files in its working directory.

- ``run_command(command)`` runs a shell command in the task's sandbox (the same one a shell task gets: pausable,
  killed on cancel, no inherited environment). Its output streams into the pane as it comes; the model gets the
  exit code and the output with secrets redacted, cut to a head and a tail when long.
- ``read_file(path)`` / ``write_file(path, content)`` work under the task's working directory only: an absolute
  path or a ``..`` that leads out is refused with a tool error the model can read and recover from.

- ``search_memory(query)`` / ``remember(content)`` search and add to agent memory (``engine.llm.memory_tools``).

The agent's ``options.tools`` picks a subset (default: all).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from engine.agents.base import TaskContext
from engine.llm.memory_tools import MEMORY_TOOL_NAMES, make_memory_tools

if TYPE_CHECKING:  # LangChain is imported when the tools are made, so building an agent stays quick
    from langchain_core.tools import BaseTool

TOOL_NAMES = ("run_command", "read_file", "write_file", *MEMORY_TOOL_NAMES)
DEFAULT_COMMAND_TIMEOUT_S = 300.0
HEAD_CHARS = 2_000  # of a command's output the model sees the start ...
TAIL_CHARS = 6_000  # ... and the end, where errors and results usually are
MAX_READ_CHARS = 20_000


class RunCommandArgs(BaseModel):
    command: str = Field(description="A shell command line, run with /bin/sh -c in the task's working directory.")


class ReadFileArgs(BaseModel):
    path: str = Field(description="A path relative to the task's working directory.")


class WriteFileArgs(BaseModel):
    path: str = Field(description="A path relative to the task's working directory; parent folders are created.")
    content: str = Field(description="The whole new content of the file (UTF-8 text).")


def checked_path(path: str) -> str:
    """``path`` if it stays inside the working directory; else a ``ValueError`` saying why."""
    if not path.strip():
        raise ValueError("the path is empty: give a path relative to the task's working directory")
    parts = PurePosixPath(path).parts
    if path.startswith(("/", "~", "\\")):
        raise ValueError(f"path {path!r} is absolute: paths are relative to the task's working directory")
    if ".." in parts:
        raise ValueError(f"path {path!r} leads outside the task's working directory ('..' is not allowed)")
    return path


class _OutputTail:
    """A command's output as the model sees it: the first ``HEAD_CHARS``, a gap marker, the last ``TAIL_CHARS``."""

    def __init__(self) -> None:
        self.head: list[str] = []
        self.head_size = 0
        self.tail: deque[str] = deque()
        self.tail_size = 0
        self.cut_lines = 0

    def add(self, line: str) -> None:
        if self.head_size < HEAD_CHARS:
            self.head.append(line[: HEAD_CHARS - self.head_size])
            self.head_size += len(line) + 1
            return
        self.tail.append(line[-TAIL_CHARS:])
        self.tail_size += len(self.tail[-1]) + 1
        while self.tail_size > TAIL_CHARS and len(self.tail) > 1:
            self.tail_size -= len(self.tail.popleft()) + 1
            self.cut_lines += 1

    def text(self) -> str:
        gap = [f"[… {self.cut_lines} lines cut …]"] if self.cut_lines else []
        return "\n".join([*self.head, *gap, *self.tail])


def make_tools(
    bound: TaskContext | None, names: Sequence[str] = TOOL_NAMES, command_timeout_s: float | None = None
) -> list[BaseTool]:
    """The tools called ``names`` for the task of ``bound`` (``None``: a graph built for its shape only).

    A tool refuses by raising ``ToolException``: the model gets the message as the tool's result and carries on.
    """
    from langchain_core.tools import StructuredTool, ToolException

    def task() -> TaskContext:
        if bound is None:
            raise ToolException("this graph was built without a task, so its tools cannot run")
        return bound

    one_at_a_time = asyncio.Lock()  # a sandbox runs one command at a time; models may ask for several at once
    timeout = DEFAULT_COMMAND_TIMEOUT_S if command_timeout_s is None else command_timeout_s

    async def run_command(command: str) -> str:
        ctx = task()
        output = _OutputTail()

        def on_output(stream: str, line: str) -> None:
            output.add(line)
            ctx.emit_output(stream, line)

        async with one_at_a_time:
            # A paused workflow starts no command: the pause may land after the model asked for this one (the
            # graph drains only at its next step boundary), and a command started now would run unfrozen.
            # No await between the gate and the start: a pause from here on reaches the starting command.
            await ctx.watched()  # a watchpoint on this very call (the same call again, …) pauses before it runs
            if not ctx.gate.is_set():
                ctx.log(f"⏸ paused: {command} runs when the workflow is resumed", "tool")
            await ctx.step()
            await ctx.gate.wait()
            ctx.log(f"$ {command}", "tool")
            result = await ctx.sandbox.run(
                command,
                on_output=on_output,
                timeout=timeout,
                env={**ctx.env, "AGENTDECK_WORKFLOW": ctx.workflow, "AGENTDECK_TASK": ctx.task.id},
                redact=ctx.redact,
                network=ctx.task.network,
                readable=ctx.upstream_workdirs,
            )
        if result.timed_out:
            ending = f"the command timed out after {timeout:g}s and was stopped"
        elif result.cancelled:
            ending = "the command was stopped before it finished"
        else:
            ending = f"exit code {result.exit_code}"
        text = output.text()
        return ctx.scrub(f"{ending}\n{text}" if text else f"{ending}\n(no output)")

    async def read_file(path: str) -> str:
        ctx = task()
        try:
            data = await ctx.sandbox.read_file(checked_path(path))
        except FileNotFoundError:
            raise ToolException(f"there is no file {path!r} in the task's working directory") from None
        except IsADirectoryError:
            raise ToolException(f"{path!r} is a directory; list it with run_command('ls {path}')") from None
        except ValueError as exc:  # ours, or the sandbox's refusal of what leads outside (a symlink, say)
            raise ToolException(str(exc)) from None
        text = data.decode("utf-8", errors="replace")
        if len(text) > MAX_READ_CHARS:
            text = text[:MAX_READ_CHARS] + f"\n[… {len(text) - MAX_READ_CHARS} more characters not shown …]"
        return ctx.scrub(text)

    async def write_file(path: str, content: str) -> str:
        try:
            await task().sandbox.write_file(checked_path(path), content)
        except IsADirectoryError:
            raise ToolException(f"{path!r} is a directory") from None
        except ValueError as exc:
            raise ToolException(str(exc)) from None
        return f"wrote {len(content.encode())} bytes to {path}"

    tools = {
        "run_command": StructuredTool.from_function(
            coroutine=run_command,
            name="run_command",
            description="Run a shell command in the task's sandbox; returns its exit code and output.",
            args_schema=RunCommandArgs,
            handle_tool_error=True,
        ),
        "read_file": StructuredTool.from_function(
            coroutine=read_file,
            name="read_file",
            description="Read a text file from the task's working directory.",
            args_schema=ReadFileArgs,
            handle_tool_error=True,
        ),
        "write_file": StructuredTool.from_function(
            coroutine=write_file,
            name="write_file",
            description="Create or overwrite a text file in the task's working directory.",
            args_schema=WriteFileArgs,
            handle_tool_error=True,
        ),
        **make_memory_tools(task),
    }
    return [tools[name] for name in names]
