"""Local sandbox: what starting a command costs, with the hardening (issue 9, point 6) on and off.

One process, taking turns in blocks of 10 runs, median over the repeats:

- ``sandbox_start``: milliseconds from ``run("true")`` to its result, p50 and p95, for each configuration: a bare
  ``asyncio`` subprocess of ``/bin/sh -c true`` (the floor: fork, exec, wait), the plain sandbox without a task
  cgroup and with one (``use_cgroup``), and the same two in bubblewrap when it works here. Every sandbox run
  includes what the hardening adds: the run record, the watchdog registration, the parent-death signal, and
  (with a cgroup) creating, joining and removing the task's cgroup. ``cgroup_cost_ms`` is the p50 difference a
  cgroup makes per mode; ``plain_over_bare`` the plain sandbox's p50 over the bare subprocess's.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._stats import percentile
from engine.sandbox import LocalSandbox, bwrap_unavailable_reason, cgroup_support

BLOCK = 10


async def _bare() -> None:
    proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "true")
    await proc.wait()


def _starter(sandbox: LocalSandbox) -> Callable[[], Awaitable[Any]]:
    async def start() -> None:
        await sandbox.run("true")

    return start


def _configurations(root: Path) -> dict[str, Callable[[], Awaitable[Any]]]:
    modes = ["plain"] + (["bwrap"] if bwrap_unavailable_reason() is None else [])
    cgroups = ["no-cgroup"] + (["cgroup"] if cgroup_support() is not None else [])
    runs: dict[str, Callable[[], Awaitable[Any]]] = {"bare-subprocess": _bare}
    for mode in modes:
        for cgroup in cgroups:
            name = f"{mode}/{cgroup}"
            sandbox = LocalSandbox(
                root / name.replace("/", "-"), use_bwrap=mode == "bwrap", use_cgroup=cgroup == "cgroup"
            )
            runs[name] = _starter(sandbox)
    return runs


async def measure(runs_per_repeat: int, repeats: int) -> dict[str, Any]:
    """The ``sandbox_start`` figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="agentdeck-sandbox-bench-") as scratch:
        configurations = _configurations(Path(scratch))
        per_repeat: dict[str, list[tuple[float, float]]] = {name: [] for name in configurations}
        for _ in range(repeats):
            samples: dict[str, list[float]] = {name: [] for name in configurations}
            for _block in range(max(1, runs_per_repeat // BLOCK)):
                for name, start in configurations.items():
                    for _ in range(BLOCK):
                        began = time.perf_counter()
                        await start()
                        samples[name].append(time.perf_counter() - began)
            for name, values in samples.items():
                per_repeat[name].append((percentile(values, 50), percentile(values, 95)))
    figures: dict[str, Any] = {}
    for name, pairs in per_repeat.items():
        p50 = statistics.median(p for p, _ in pairs) * 1000
        p95 = statistics.median(q for _, q in pairs) * 1000
        figures[name] = f"p50 {p50:.2f} ms, p95 {p95:.2f} ms"
        figures[f"_{name}_p50_ms"] = round(p50, 3)
    for mode in ("plain", "bwrap"):
        if f"_{mode}/cgroup_p50_ms" in figures:
            cost = figures[f"_{mode}/cgroup_p50_ms"] - figures[f"_{mode}/no-cgroup_p50_ms"]
            figures[f"cgroup_cost_ms[{mode}]"] = round(cost, 3)
    figures["plain_over_bare"] = round(figures["_plain/no-cgroup_p50_ms"] / figures["_bare-subprocess_p50_ms"], 2)
    figures["runs"] = f"{max(1, runs_per_repeat // BLOCK) * BLOCK} per configuration per repeat, {repeats} repeats"
    return {key: value for key, value in figures.items() if not key.startswith("_")} | {
        "p50_ms": {key[1:-7]: value for key, value in figures.items() if key.startswith("_")}
    }


async def run(quick: bool = False) -> dict[str, Any]:
    return {"sandbox_start": await measure(runs_per_repeat=20 if quick else 100, repeats=3)}
