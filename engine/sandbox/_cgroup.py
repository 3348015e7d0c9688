"""Per-task control groups: one memory and process budget for a command's whole tree, and a way to find and kill
every process of it, even one that left the tree (``setsid``, double fork), when this machine lets us.

rlimits are per process (four children under a 2 GB address-space limit used 8 GB between them) and
``RLIMIT_NPROC`` counts every process of the *user* (and is ignored for root), so neither bounds a task. A cgroup
does: ``memory.max`` / ``memory.limit_in_bytes`` caps the RAM (and tmpfs pages) of all the task's processes
together, ``pids.max`` caps how many it can have at once, and the kernel keeps every descendant in it.

What a machine offers varies, so :func:`cgroup_support` looks once per process:

- **cgroup v2** (``0::/path`` in ``/proc/self/cgroup``): a child of our own cgroup holds the task. It can carry
  ``memory.max`` and ``pids.max`` only if those controllers are enabled in our cgroup's ``cgroup.subtree_control``,
  which v2 allows only for a cgroup without processes: when the engine is alone in its cgroup it moves into a
  leaf (``agentdeck-engine``) to make that so (:func:`_enable_for_children`). Without them a task cgroup still
  gives membership and ``cgroup.kill`` (kernel 5.14+).
- **cgroup v1** ``memory`` and ``pids`` hierarchies (hybrid hosts, older container runtimes): a child of our
  cgroup in each provides the limit that v2 could not.

Task cgroups are named ``agentdeck-task-<hex>``; nothing else is ever killed or removed through this module.
A process joins before ``exec`` (the command's preexec writes ``0`` to each ``cgroup.procs`` opened beforehand),
so it cannot fork anything outside first.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Every task cgroup's name starts with this; reaping refuses any other directory.
TASK_PREFIX = "agentdeck-task-"

_LIMIT_CONTROLLERS = ("memory", "pids")


@dataclass(frozen=True)
class _Place:
    """Where task cgroups can be created in one hierarchy."""

    #: Our own cgroup in this hierarchy; task cgroups are its children.
    base: Path
    version: int
    #: Which of ``memory``/``pids`` a child here can limit.
    controllers: frozenset[str]


@dataclass(frozen=True)
class CgroupSupport:
    """The hierarchies this process may create task cgroups in."""

    places: tuple[_Place, ...]

    def limits(self, controller: str) -> bool:
        """A task cgroup here can limit ``controller`` (``memory`` or ``pids``)."""
        return any(controller in place.controllers for place in self.places)

    def describe(self) -> str:
        parts = []
        for place in self.places:
            what = ", ".join(sorted(place.controllers)) or "membership and kill only"
            parts.append(f"v{place.version} at {place.base} ({what})")
        return "; ".join(parts)


def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """``(root, mount point, fs type, super options)`` of every cgroup mount, from ``/proc/self/mountinfo``."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            # Paths in mountinfo escape spaces and the like as octal (\040); cgroup mount points rarely have any.
            mount = fields[4].encode().decode("unicode_escape")
            found.append((fields[3], Path(mount), tail[0], set(tail[2].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """Our cgroup path per hierarchy: key ``""`` for v2, else each v1 controller name."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as lines:
        for line in lines:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                own[""] = parts[2]
            for name in parts[1].split(","):
                if name:
                    own[name] = parts[2]
    return own


def _dir_in(mount_root: str, mount: Path, own: str) -> Path | None:
    """Where our cgroup ``own`` appears under a mount of the hierarchy's subtree ``mount_root``."""
    if own == mount_root:
        return mount
    prefix = mount_root.rstrip("/") + "/"
    if not own.startswith(prefix):
        return None  # our cgroup is outside what is mounted (a container seeing only part of the tree)
    return mount / own[len(prefix) :]


def _can_create_in(base: Path) -> bool:
    probe = base / f"{TASK_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


#: The leaf the engine moves itself into on cgroup v2, to free its cgroup for task cgroups with limits.
ENGINE_LEAF = "agentdeck-engine"


def _enable_for_children(base: Path, wanted: set[str]) -> set[str]:
    """Make the ``wanted`` v2 controllers available to children of our cgroup ``base``; returns what is.

    cgroup v2 lets a cgroup enable controllers for its children only while no process lives in it ("no internal
    processes"), and we live in ``base``. When we are alone there - the only process of a container, or run as
    ``systemd-run --user --scope -p Delegate=yes agentdeck ...`` - we move into a leaf of our own and enable
    them; with anyone else there (a shell sharing our session scope) we leave everything as it is.
    """
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    missing = (wanted & set((base / "cgroup.controllers").read_text().split())) - enabled
    if not missing or (base / "cgroup.procs").read_text().split() != [str(os.getpid())]:
        return enabled & wanted
    leaf = base / ENGINE_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        log.debug("cannot move into %s: %s", leaf, exc)
        return enabled & wanted
    for controller in sorted(missing):
        try:
            (base / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as exc:
            log.debug("cannot enable %s for task cgroups in %s: %s", controller, base, exc)
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    if not enabled & wanted:  # nothing gained: go back to where we were
        with contextlib.suppress(OSError):
            (base / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
    return enabled & wanted


@functools.cache
def cgroup_support() -> CgroupSupport | None:
    """Where this process may put task cgroups, or ``None`` when nowhere (looked up once per process)."""
    own = _own_cgroups()
    v2: _Place | None = None
    v1: dict[str, _Place] = {}
    for root, mount, kind, options in _mounts():
        if kind == "cgroup2" and "" in own and v2 is None:
            base = _dir_in(root, mount, own[""])
            if base is None or not _can_create_in(base):
                continue
            with contextlib.suppress(OSError):
                v2 = _Place(base, 2, frozenset(_enable_for_children(base, set(_LIMIT_CONTROLLERS))))
        elif kind == "cgroup":
            for controller in _LIMIT_CONTROLLERS:
                if controller in options and controller in own and controller not in v1:
                    base = _dir_in(root, mount, own[controller])
                    if base is not None and _can_create_in(base):
                        v1[controller] = _Place(base, 1, frozenset({controller}))
    places = [v2] if v2 is not None else []
    for controller, place in v1.items():
        if v2 is None or controller not in v2.controllers:
            places.append(place)
    if not places:
        return None
    support = CgroupSupport(tuple(places))
    log.debug("task cgroups: %s", support.describe())
    return support


class TaskCgroup:
    """The cgroup(s) of one command: one directory per hierarchy used, all holding the same processes."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    def __repr__(self) -> str:
        return f"TaskCgroup({[str(d) for d in self.dirs]})"

    @classmethod
    def paths(cls, support: CgroupSupport, run: str) -> list[Path]:
        """Where the task cgroups of run ``run`` go (known before they exist, so a run record can name them)."""
        return [place.base / f"{TASK_PREFIX}{run}" for place in support.places]

    @classmethod
    def create(cls, support: CgroupSupport, run: str, *, memory_bytes: int | None, max_pids: int | None) -> TaskCgroup:
        """New, empty task cgroups for run ``run`` with these limits.

        Raises:
            OSError: A directory or a limit could not be created or written (what was made is removed).
        """
        name = f"{TASK_PREFIX}{run}"
        made = cls([])
        try:
            for place in support.places:
                path = place.base / name
                path.mkdir()
                made.dirs.append(path)
                if "memory" in place.controllers and memory_bytes is not None:
                    _set_memory(path, place.version, memory_bytes)
                if "pids" in place.controllers and max_pids is not None:
                    (path / "pids.max").write_text(str(max_pids))
        except OSError:
            made.remove()
            raise
        return made

    @classmethod
    def adopt(cls, paths: list[str]) -> TaskCgroup | None:
        """The task cgroups named in a run record, keeping only real, existing agentdeck task cgroups."""
        mounts = [mount for _root, mount, _kind, _options in _mounts()]
        dirs = []
        for raw in paths:
            path = Path(raw)
            if (
                path.name.startswith(TASK_PREFIX)
                and path.is_absolute()
                and ".." not in path.parts
                and any(path.is_relative_to(mount) and path != mount for mount in mounts)
                and (path / "cgroup.procs").is_file()
            ):
                dirs.append(path)
        return cls(dirs) if dirs else None

    def open_for_joining(self) -> list[int]:
        """File descriptors of each ``cgroup.procs``; a child writing ``0`` to them joins before it ``exec``s."""
        fds: list[int] = []
        try:
            for path in self.dirs:
                fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def pids(self) -> set[int]:
        """The processes in the cgroup now (empty once it is gone)."""
        found: set[int] = set()
        for path in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(pid) for pid in (path / "cgroup.procs").read_text().split())
        return found

    def kill(self, timeout_s: float = 5.0) -> bool:
        """SIGKILL every process in the cgroup and wait until it is empty; ``False`` if some are still there.

        ``cgroup.kill`` (v2) kills all members at once, forking ones included. Without it, every member is sent
        SIGKILL until none is left: a process with a fatal signal pending cannot fork, so this converges.
        """
        deadline = time.monotonic() + timeout_s
        atomic = next((path / "cgroup.kill" for path in self.dirs if (path / "cgroup.kill").exists()), None)
        while True:
            members = self.pids()
            if not members:
                return True
            if atomic is not None:
                with contextlib.suppress(OSError):
                    atomic.write_text("1")
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Remove the (empty) cgroup directories; ``False`` if one is still busy after ``timeout_s``.

        A killed member stays charged to the cgroup until its parent has reaped it, so ``rmdir`` may report it busy
        for a moment after ``cgroup.procs`` is empty.
        """
        deadline = time.monotonic() + timeout_s
        left = list(self.dirs)
        while True:
            busy = []
            for path in left:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    continue
                except OSError as error:
                    busy.append((path, error))
            if not busy:
                return True
            if time.monotonic() >= deadline:
                for path, why in busy:
                    log.warning("could not remove task cgroup %s: %s", path, why)
                return False
            left = [path for path, _why in busy]
            time.sleep(0.01)


def _set_memory(path: Path, version: int, limit: int) -> None:
    """Cap RAM and keep the task from spilling past the cap into swap (swap is the host's too)."""
    if version == 2:
        (path / "memory.max").write_text(str(limit))
        swap = path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")
        return
    (path / "memory.limit_in_bytes").write_text(str(limit))
    # memsw (RAM + swap) must be set after, and not below, the RAM limit; it exists only with swap accounting.
    both = path / "memory.memsw.limit_in_bytes"
    if both.exists():
        both.write_text(str(limit))


def cgroup_of(pid: int) -> list[str]:
    """The task cgroups ``pid`` is in (the last path component of each matching line of /proc/PID/cgroup)."""
    names = []
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup") as lines:
        for line in lines:
            name = line.rstrip("\n").rsplit("/", 1)[-1]
            if name.startswith(TASK_PREFIX):
                names.append(name)
    return names
