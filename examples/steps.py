"""Python steps for the example workflows (``callable: "steps:NAME"``; the workflow's folder is importable)."""

from __future__ import annotations

import time
from typing import Any


def summarise(ctx: Any) -> dict[str, Any]:
    """A synchronous step (it runs in a worker thread): summarise what the upstream tasks produced."""
    ctx.log(f"summarising {ctx.input.get('metric')} from {sorted(ctx.upstream)}")
    for step in range(1, 5):
        ctx.step_sync()  # a step boundary: pause holds here, cancel stops here
        ctx.progress(step / 4, f"step {step}/4")
        time.sleep(0.1)
    upstream_rows = sum(int(out.get("rows", 0)) for out in ctx.upstream.values() if isinstance(out, dict))
    ctx.log(f"upstream rows: {upstream_rows}")
    return {"metric": ctx.input.get("metric"), "upstream": sorted(ctx.upstream), "rows": upstream_rows}
