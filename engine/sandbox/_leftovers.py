"""What a command left behind when its engine died, and telling sandboxed processes apart from others.

While a command runs, a **run record** beside its working directory (``.TASK.agentdeck-run-ID``, a sibling so
that a task - which may write its own directory - cannot forge it) names what belongs to the run: a random marker that
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
import glob
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

#: Runs live in this process, by record path: never reaped (a second sandbox on the same directory in the same
#: engine must not kill the first one's command), and what :func:`sandboxed` recognises.
_LIVE: dict[Path, RunRecord] = {}

_PREFIX = ".agentdeck-run-"


def record_path(workdir: Path, marker: str) -> Path:
    """Where the record of the run ``marker`` on ``workdir`` lives (one per run: two may overlap briefly, when
    a task is resumed while its cancelled run is still being stopped)."""
    return workdir.parent / f".{workdir.name}{_PREFIX}{marker[:16]}"


def records_of(workdir: Path) -> list[Path]:
    """The run records of ``workdir`` on disk."""
    return sorted(
        path
        for path in workdir.parent.glob(f".{glob.escape(workdir.name)}{_PREFIX}*")
        if not path.name.endswith(".partial")
    )


@dataclass(eq=False)
class RunRecord:
    """What belongs to one run of a command (see the module docstring)."""

    workdir: Path
    marker: str = field(default_factory=lambda: secrets.token_hex(16))
    started: float = field(default_factory=time.time)
    #: pid -> start time (``psutil.Process.create_time()``).
    pids: dict[int, float] = field(default_factory=dict)
    cgroups: list[str] = field(default_factory=list)
    #: The command's root process (pid, start time) once it exists; in memory only.
    root: tuple[int, float] | None = None

    @property
    def path(self) -> Path:
        return record_path(self.workdir, self.marker)

    def save(self) -> None:
        """Write the record: a JSON header line, then one ``PID START_TIME`` line per process.

        Written whole under a temporary name and renamed into place (a crash mid-write leaves no half record);
        :meth:`add` then only appends lines - rewriting the file on each new process cost milliseconds on ext4,
        which flushes a file renamed over another.
        """
        header = {"marker": self.marker, "started": self.started, "engine": os.getpid(), "cgroups": self.cgroups}
        lines = [json.dumps(header), *(f"{pid} {created!r}" for pid, created in sorted(self.pids.items()))]
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("\n".join(lines) + "\n")
        partial.replace(self.path)

    def spawned(self, root: psutil.Process) -> None:
        """The command's root process exists: remember it (here and on disk)."""
        with contextlib.suppress(psutil.Error):
            self.root = (root.pid, root.create_time())
        self.add([root])

    def add(self, processes: list[psutil.Process]) -> None:
        """Remember processes of the run (saved only when one is new)."""
        fresh = []
        for proc in processes:
            if proc.pid in self.pids:
                continue
            with contextlib.suppress(psutil.Error):
                self.pids[proc.pid] = proc.create_time()
                fresh.append(f"{proc.pid} {self.pids[proc.pid]!r}\n")
        if fresh and self.path in _LIVE:  # (appending to a discarded record would make it anew)
            # A crash mid-append leaves a torn last line, which load() skips.
            with contextlib.suppress(OSError), open(self.path, "a") as out:
                out.write("".join(fresh))

    def discard(self) -> None:
        """The run is over and left nothing: forget it."""
        _LIVE.pop(self.path, None)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        try:
            header, *lines = path.read_text().splitlines()
            data = json.loads(header)
            pids = {}
            for line in lines:
                with contextlib.suppress(ValueError):
                    pid, created = line.split()
                    pids[int(pid)] = float(created)
            record = cls(
                workdir=path.parent / path.name[1:].rsplit(_PREFIX, 1)[0],
                marker=str(data["marker"]),
                started=float(data["started"]),
                pids=pids,
                cgroups=[str(c) for c in data.get("cgroups", [])],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable run record %s: %s", path, exc)
            return None
        if record.path != path:
            log.warning("ignoring run record %s: it names another run", path)
            return None
        return record


def begin(record: RunRecord) -> None:
    """Save the record of a run about to start: before its cgroups and its command exist, so neither is ever
    without one."""
    record.save()
    _LIVE[record.path] = record


def reap(workdir: Path, settle_s: float = 5.0) -> int:
    """Kill what earlier, unfinished runs on ``workdir`` left alive; returns how many processes that was."""
    return sum(reap_record(path, settle_s) for path in records_of(workdir) if path not in _LIVE)


def reap_record(path: Path, settle_s: float = 5.0) -> int:
    """Kill what the run recorded in ``path`` left alive and remove the record; returns how many processes."""
    record = RunRecord.load(path)
    if record is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
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
    if killed:
        log.warning(
            "killed %d process(es) left running in %s by an earlier run whose engine died",
            len(killed),
            record.workdir,
        )
    if cgroup is not None and not cgroup.remove():
        return len(killed)  # keep the record: the next sandbox on this directory tries again
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return len(killed)


def _needle(marker: str) -> bytes:
    return f"\0{MARKER_ENV}={marker}\0".encode()


def _matching(record: RunRecord) -> list[psutil.Process]:
    """Live processes of the recorded run: same pid and start time, or the run's marker in their environment."""
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for pid, created in record.pids.items():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01 and pid != me:
                found[pid] = proc
    needle = _needle(record.marker)
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            # Read the raw environ: psutil's parser would decode every variable of every process.
            if proc.create_time() >= record.started - 1 and needle in _environ(proc.pid):
                found[proc.pid] = proc
    return list(found.values())


def _environ(pid: int) -> bytes:
    """A process's initial environment, ``\0``-delimited on both ends so whole variables can be matched."""
    with open(f"/proc/{pid}/environ", "rb") as raw:
        return b"\0" + raw.read().rstrip(b"\0") + b"\0"


def sandboxed(pid: int) -> str | None:
    """Why process ``pid`` belongs to a command this process runs in a sandbox, or ``None`` if it does not.

    Looked at: the run's task cgroup, its marker in the environment, a session or an ancestor that is the run's
    root. A plain-mode task that double-forks, starts a new session and execs with a scrubbed environment on a
    machine without cgroups is not recognised (README, "Sandbox"). Sandboxes of other engines do not count:
    an engine running inside a task serves the clients of that task.
    """
    live = list(_LIVE.values())
    if not live:
        return None
    groups = {Path(d).name for record in live for d in record.cgroups}
    if groups & set(_cgroup.cgroup_of(pid)):
        return "it runs in a sandbox's cgroup"
    with contextlib.suppress(OSError):
        environ = _environ(pid)
        if any(_needle(record.marker) in environ for record in live):
            return "it runs in a sandbox (its environment says so)"
    try:
        proc = psutil.Process(pid)
        lineage = [proc, *proc.parents()]
        session = os.getsid(pid)
    except (psutil.Error, OSError):
        return None
    for record in live:
        if record.root is None:
            continue
        root, created = record.root
        if session == root:
            return "it runs in a sandbox's session"
        for ancestor in lineage:
            with contextlib.suppress(psutil.Error):
                if ancestor.pid == root and abs(ancestor.create_time() - created) < 0.01:
                    return "it descends from a sandboxed command"
    return None
