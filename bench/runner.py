"""``agentdeck bench``: runs the benchmarks and prints a table (and JSON with ``--json PATH``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench import (
    checkpointer_bench,
    codec_bench,
    dashboard_bench,
    engine_bench,
    load_bench,
    recovery_bench,
    redis_bench,
    sandbox_bench,
    spec_bench,
    watch_bench,
)


def render(results: dict[str, Any]) -> str:
    lines = []
    for name, figures in results.items():
        met = figures.get("met")
        mark = "" if met is None else ("  [target met]" if met else "  [TARGET MISSED]")
        lines.append(f"{name}{mark}")
        for key, value in figures.items():
            if key != "met":
                lines.append(f"  {key:<24} {value}")
    return "\n".join(lines)


def main(quick: bool = False, json_path: Path | None = None) -> int:
    async def everything() -> dict[str, Any]:
        return {
            **await engine_bench.run(quick),
            **await load_bench.run(quick),
            **await checkpointer_bench.run(quick),
            **await redis_bench.run(quick),
            **await codec_bench.run(quick),
            **await dashboard_bench.run(quick),
            **await spec_bench.run(quick),
            **await sandbox_bench.run(quick),
            **await watch_bench.run(quick),
            **await recovery_bench.run(quick),
        }

    results = asyncio.run(everything())
    print(render(results))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
    return 0
