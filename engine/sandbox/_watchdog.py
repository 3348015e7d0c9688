"""A watchdog process that kills what the sandboxes of this engine leave running when the engine dies.

The parent-death signal armed before ``exec`` takes down the command (plain mode) or the outer bwrap (bwrap mode)
with the engine, but not everything: a plain-mode shell's children do not inherit it, and bwrap's namespace init
arms its own only after its mount setup, so an engine killed during those milliseconds orphans a sandbox that runs
on (measured: 1 in 15 kills at a random moment of the start). Nothing in the kernel ties those processes to the
engine, so a second process does: it holds the read end of a pipe whose write end only the engine has. However the
engine ends - SIGKILL included - the kernel closes the pipe; the watchdog reads EOF, reaps every run still
registered (``_leftovers.reap``: the task cgroup, the recorded pids, the run marker in the environment) and exits.

Protocol: one JSON line per change, ``["+", RECORD]`` before a command starts (naming its run record, which exists
by then) and ``["-", RECORD]`` after its run ended cleanly. The watchdog runs in its own session with no terminal,
so Ctrl-C and a kill of the engine's process group do not reach it; it is started on the first run and lives as
long as the engine. The next sandbox made on a working directory reaps too (``LocalSandbox.__init__``), in case
the watchdog was killed along with the engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_process: subprocess.Popen[bytes] | None = None
#: The process that started the watchdog: a forked child of the engine must start its own.
_owner: int | None = None
#: Run records registered now, re-sent to a watchdog restarted after it died.
_watched: set[str] = set()
#: Engines with event loops in several threads share the one watchdog and its pipe.
_lock = threading.Lock()


def _start() -> None:
    global _process, _owner
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    _process = subprocess.Popen(
        [sys.executable, "-c", "from engine.sandbox._watchdog import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        # Not the engine's stderr: whoever reads that (a pipe) would wait for the watchdog to close it too.
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    _owner = os.getpid()
    assert _process.stdin is not None
    for record in _watched:
        _process.stdin.write(json.dumps(["+", record]).encode() + b"\n")
    _process.stdin.flush()


def _send(op: str, record: Path) -> None:
    with _lock:
        _send_locked(op, record)


def _send_locked(op: str, record: Path) -> None:
    key = str(record)
    if _owner is not None and _owner != os.getpid():
        _watched.clear()  # a forked child: its parent's runs are its parent's watchdog's business
    if op == "+":
        _watched.add(key)
    else:
        _watched.discard(key)
    for _ in range(2):
        try:
            if _process is None or _owner != os.getpid() or _process.poll() is not None or _process.stdin is None:
                _start()  # sends every current registration, this one included
            else:
                _process.stdin.write(json.dumps([op, key]).encode() + b"\n")
                _process.stdin.flush()
            return
        except OSError as exc:  # BrokenPipeError: it died since we last looked
            log.warning("sandbox watchdog unavailable (%s); starting another", exc)
            _stop_quietly()
    log.error("no sandbox watchdog: the run of %s may outlive a killed engine until it is resumed", record)


def _stop_quietly() -> None:
    global _process
    if _process is not None and _owner == os.getpid():
        with contextlib.suppress(OSError):
            _process.kill()
    _process = None


def watch(record: Path) -> None:
    """Register a run (by its record) that is about to start."""
    _send("+", record)


def unwatch(record: Path) -> None:
    """The run ended and left nothing behind."""
    _send("-", record)


def main() -> None:
    """The watchdog: follow registrations on stdin until EOF (the engine is gone), then reap what is left."""
    from engine.sandbox._leftovers import reap_record

    watched: set[str] = set()
    for line in sys.stdin.buffer:
        with contextlib.suppress(ValueError, TypeError):
            op, record = json.loads(line)
            (watched.add if op == "+" else watched.discard)(str(record))
    for record in watched:
        with contextlib.suppress(Exception):
            reap_record(Path(record))
