"""What a command left behind when its engine died, and telling sandboxed processes apart from others.

While a command runs, a **run record** beside its working directory (``.TASK.agentdeck-run``, a sibling so that a
task - which may write its own directory - cannot forge it) names what belongs to the run: a random marker that
every process of the run carries in its environment (``AGENTDECK_SANDBOX_RUN``), the root process and every
process seen since, each with its start time, and the run's task cgroups. A run that ends normally removes it.

If the engine is killed (SIGKILL, power cut) the record stays. The next sandbox made on that working directory -
the resumed task - first kills what the record names and is still alive: members of the recorded cgroups, and
processes whose pid *and* start time match or whose environment carries the marker. A reused pid has another start
time and no marker, so it is never mistaken for a leftover. Only then does the task start again, so two copies never
run side by side.

:func:`sandboxed` answers "is this process part of a running sandbox?" for the control socket, which must refuse
sandboxed clients even when they hold the token (in plain mode a task runs as the engine's user and can read it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from engine.sandbox import _cgroup, _proctree

log = logging.getLogger(__name__)

#: The environment variable naming the run a process belongs to.
MARKER_ENV = "AGENTDECK_SANDBOX_RUN"

#: Records of runs that are live in this process: never reaped (a second sandbox on the same directory in the
#: same engine must not kill the first one's command).
_LIVE_RECORDS: set[Path] = set()

#: Root processes (pid -> start time) of the commands running now in this process: their sessions, their
#: descendants and their cgroups are sandboxed.
_LIVE_ROOTS: dict[int, float] = {}


def record_path(workdir: Path) -> Path:
    return workdir.parent / f".{workdir.name}.agentdeck-run"


@dataclass
class RunRecord:
    """What belongs to one run of a command (see the module docstring)."""

    path: Path
    workdir: Path
    marker: str = field(default_factory=lambda: secrets.token_hex(16))
    started: float = field(default_factory=time.time)
    #: pid -> start time (``psutil.Process.create_time()``).
    pids: dict[int, float] = field(default_factory=dict)
    cgroups: list[str] = field(default_factory=list)

    def save(self) -> None:
        """Write the record atomically (a crash mid-write leaves the old one or the new one, never half)."""
        data = {
            "marker": self.marker,
            "started": self.started,
            "engine": os.getpid(),
            "pids": [[pid, created] for pid, created in sorted(self.pids.items())],
            "cgroups": self.cgroups,
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data))
        partial.replace(self.path)

    def add(self, processes: list[psutil.Process]) -> None:
        """Remember processes of the run (saved only when one is new)."""
        fresh = False
        for proc in processes:
            if proc.pid in self.pids:
                continue
            with contextlib.suppress(psutil.Error):
                self.pids[proc.pid] = proc.create_time()
                fresh = True
        if fresh:
            with contextlib.suppress(OSError):
                self.save()

    def discard(self) -> None:
        _LIVE_RECORDS.discard(self.path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @classmethod
    def load(cls, workdir: Path) -> RunRecord | None:
        path = record_path(workdir)
        try:
            data = json.loads(path.read_text())
            return cls(
                path=path,
                workdir=workdir,
                marker=str(data["marker"]),
                started=float(data["started"]),
                pids={int(pid): float(created) for pid, created in data.get("pids", [])},
                cgroups=[str(c) for c in data.get("cgroups", [])],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable run record %s: %s", path, exc)
            return None


def begin(workdir: Path, cgroup: _cgroup.TaskCgroup | None) -> RunRecord:
    """A record for a run about to start, saved before the command exists (so it is never without one)."""
    record = RunRecord(record_path(workdir), workdir, cgroups=[str(d) for d in cgroup.dirs] if cgroup else [])
    record.save()
    _LIVE_RECORDS.add(record.path)
    return record


def reap(workdir: Path, settle_s: float = 5.0) -> int:
    """Kill what an earlier, unfinished run on ``workdir`` left alive; returns how many processes that was."""
    path = record_path(workdir)
    if path in _LIVE_RECORDS:
        return 0
    record = RunRecord.load(workdir)
    if record is None:
        return 0
    killed: set[int] = set()
    cgroup = _cgroup.TaskCgroup.adopt(record.cgroups)
    if cgroup is not None:
        killed |= cgroup.pids()
        if not cgroup.kill(settle_s):
            log.warning("processes %s of a crashed run survive SIGKILL", sorted(cgroup.pids()))
    leftovers = _matching(record)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + settle_s
    while alive := [proc for proc in leftovers if _proctree.is_alive(proc)]:
        if time.monotonic() >= deadline:
            log.warning("processes %s of a crashed run survive SIGKILL", [p.pid for p in alive])
            break
        time.sleep(0.01)
    killed |= {proc.pid for proc in leftovers}
    if cgroup is not None:
        cgroup.remove()
    if killed:
        log.warning(
            "killed %d process(es) left running in %s by an earlier run whose engine died", len(killed), workdir
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return len(killed)


def _matching(record: RunRecord) -> list[psutil.Process]:
    """Live processes of the recorded run: same pid and start time, or the run's marker in their environment."""
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for pid, created in record.pids.items():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01 and pid != me:
                found[pid] = proc
    needle = f"{MARKER_ENV}={record.marker}".encode()
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            # Read the raw environ: psutil's parser would decode every variable of every process.
            if proc.create_time() >= record.started - 1 and needle in _environ(proc.pid):
                found[proc.pid] = proc
    return list(found.values())


def _environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as raw:
        return b"\0" + raw.read()  # so the needle matches the first variable too, after the \0 we search for


def started(root: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        _LIVE_ROOTS[root.pid] = root.create_time()


def ended(pid: int) -> None:
    _LIVE_ROOTS.pop(pid, None)


def sandboxed(pid: int) -> str | None:
    """Why process ``pid`` counts as running in a sandbox (any agentdeck sandbox), or ``None`` if it does not.

    Looked at: a task cgroup, the run marker in its environment, a session or an ancestor that is the root of a
    command running in this process. A plain-mode task that double-forks, starts a new session and execs with
    a scrubbed environment on a machine without cgroups is not recognised (README, "Sandbox").
    """
    if _cgroup.cgroup_of(pid):
        return "it runs in a sandbox's cgroup"
    with contextlib.suppress(OSError):
        if f"\0{MARKER_ENV}=".encode() in _environ(pid):
            return "it runs in a sandbox (its environment says so)"
    try:
        proc = psutil.Process(pid)
        lineage = [proc, *proc.parents()]
        session = os.getsid(pid)
    except (psutil.Error, OSError):
        return None
    for root, created in list(_LIVE_ROOTS.items()):
        if session == root:
            return "it runs in a sandbox's session"
        for ancestor in lineage:
            with contextlib.suppress(psutil.Error):
                if ancestor.pid == root and abs(ancestor.create_time() - created) < 0.01:
                    return "it descends from a sandboxed command"
    return None
