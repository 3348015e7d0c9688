"""Steps for the crash-recovery tests: side effects that say which process caused them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

DELAY_S = 0.3


def record(ctx: Any) -> dict[str, Any]:
    """Append ``TASK PID`` to the log file named in the input, halfway through the task (sync: runs in a thread).

    A kill before the line is written leaves no trace; a kill after it but before the task completes leaves a
    line for a task that is not completed (it runs again on resume, so its line may appear twice).
    """
    delay = float(ctx.input.get("delay", DELAY_S))
    time.sleep(delay / 2)
    ctx.step_sync()
    with Path(ctx.input["log"]).open("a") as log:
        log.write(f"{ctx.task.id} {os.getpid()}\n")
        log.flush()
    time.sleep(delay / 2)
    return {"wrote": ctx.task.id, "pid": os.getpid()}
