"""The python step of the recovery bench's workflow: a side effect that says which process caused it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def record(ctx: Any) -> dict[str, Any]:
    """Append ``TASK PID`` to the file ``input.log`` halfway through ``input.delay`` seconds (in a worker thread;
    a step boundary before the side effect), printing a line before and after it.

    A kill before the line is written leaves no trace; a kill after it but before the task completes leaves a line
    for a task that is not completed: it runs again on resume, so its line may appear twice — once per process.
    """
    delay = float(ctx.input.get("delay", 0.1))
    ctx.log(f"{ctx.task.id} starting")
    time.sleep(delay / 2)
    ctx.step_sync()
    with Path(ctx.input["log"]).open("a") as log:
        log.write(f"{ctx.task.id} {os.getpid()}\n")
    time.sleep(delay / 2)
    ctx.log(f"{ctx.task.id} wrote its line")
    return {"wrote": ctx.task.id, "pid": os.getpid()}
