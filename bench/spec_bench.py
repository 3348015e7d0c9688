"""Workflow validation at scale: ``load_workflow`` on big chain and fan-in files, next to libyaml alone.

Each figure is the median of 3 runs in this process, wall and CPU time:

- ``spec_validate_chain`` / ``spec_validate_fan_in``: reading, parsing, validating and graph-checking a file of N
  tasks (each depends on the one before / the last depends on all), then ``topological_order()``. The peer is
  PyYAML's C loader (libyaml) turning the same text into plain dicts, with no lines and no checks; compare CPU
  seconds (``cpu_ratio_to_peer``): wall time follows whatever else the machine is doing. ``per_task_us`` (CPU)
  at a tenth of N next to N shows whether cost grows with size (``growth`` near 1.0 = linear; cycle detection
  used to make it quadratic).
- ``spec_ruamel_roundtrip`` (full run only): the ruamel.yaml round-trip parse the loader used before, on a tenth of
  N, for comparison.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine.spec import load_workflow

REPEATS = 3


def workflow_text(n: int, *, fan_in: bool) -> str:
    lines = ["name: big", "agents:", "  a: {kind: shell}", "tasks:"]
    for i in range(n):
        deps = f"t{i - 1}" if i and not fan_in else ""
        lines.append(f"  - {{id: t{i}, agent: a, run: 'true', depends_on: [{deps}]}}")
    if fan_in:
        lines[-1] = (
            f"  - {{id: t{n - 1}, agent: a, run: 'true', depends_on: [{', '.join(f't{j}' for j in range(n - 1))}]}}"
        )
    return "\n".join(lines) + "\n"


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Median wall and CPU seconds of ``work`` over `REPEATS` runs."""
    walls, cpus = [], []
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def validate(path: Path) -> None:
    spec = load_workflow(path)
    spec.topological_order()


def shape(folder: Path, n: int, *, fan_in: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"tasks": n}
    per_task: dict[int, float] = {}
    for size in (n // 10, n):
        path = folder / f"w{size}{'f' if fan_in else 'c'}.yaml"
        text = workflow_text(size, fan_in=fan_in)
        path.write_text(text)
        wall, cpu = timed(lambda path=path: validate(path))  # type: ignore[misc]
        per_task[size] = cpu / size * 1e6
        if size == n:
            peer_wall, peer_cpu = timed(lambda text=text: yaml.load(text, Loader=yaml.CSafeLoader))  # type: ignore[misc]
            figures |= {
                "file_mb": round(len(text) / 1e6, 1),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "peer_wall_s": round(peer_wall, 2),
                "peer_cpu_s": round(peer_cpu, 2),
                "cpu_ratio_to_peer": round(cpu / peer_cpu, 2),
            }
    figures["per_task_us"] = {size: round(value, 1) for size, value in per_task.items()}
    figures["growth"] = round(per_task[n] / per_task[n // 10], 2)
    return figures


async def run(quick: bool) -> dict[str, Any]:
    n = 10_000 if quick else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {
            "spec_validate_chain": shape(folder, n, fan_in=False),
            "spec_validate_fan_in": shape(folder, n, fan_in=True),
        }
    if not quick:
        from ruamel.yaml import YAML

        text = workflow_text(n // 10, fan_in=False)
        wall, cpu = timed(lambda: YAML(typ="rt").load(text))
        results["spec_ruamel_roundtrip"] = {"tasks": n // 10, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
    return results
