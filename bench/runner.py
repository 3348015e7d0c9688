"""``agentdeck bench``: runs the benchmarks and prints a table (and JSON with ``--json PATH``)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bench import (
    checkpointer_bench,
    codec_bench,
    dashboard_bench,
    engine_bench,
    load_bench,
    memory_bench,
    recovery_bench,
    redis_bench,
    replay_bench,
    sandbox_bench,
    spec_bench,
    watch_bench,
    watchpoint_bench,
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


SECTIONS = {
    "engine": engine_bench,
    "load": load_bench,
    "checkpointer": checkpointer_bench,
    "redis": redis_bench,
    "codec": codec_bench,
    "dashboard": dashboard_bench,
    "spec": spec_bench,
    "sandbox": sandbox_bench,
    "watch": watch_bench,
    "watchpoints": watchpoint_bench,
    "recovery": recovery_bench,
    "memory": memory_bench,
    "replay": replay_bench,
}


def main(quick: bool = False, json_path: Path | None = None, only: list[str] | None = None) -> int:
    """Run the sections named in ``only`` (all when empty), in the order above."""
    unknown = sorted(set(only or ()) - SECTIONS.keys())
    if unknown:
        names = ", ".join(SECTIONS)
        print(f"agentdeck bench: unknown section {', '.join(unknown)}; sections: {names}", file=sys.stderr)
        return 2
    chosen = [module for name, module in SECTIONS.items() if not only or name in only]

    async def everything() -> dict[str, Any]:
        results: dict[str, Any] = {}
        for module in chosen:
            results.update(await module.run(quick))
        return results

    results = asyncio.run(everything())
    print(render(results))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
    return 0
