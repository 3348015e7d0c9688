"""Shell snippets that find, freeze, thaw and stop a command's whole process tree inside an E2B sandbox.

envd signals only the process it started, and only with SIGTERM or SIGKILL (``SendSignal``), and it starts that
process in envd's own process group (no ``Setpgid``). So the E2B backend starts every command as the leader of a new
session (``exec setsid``: not a group leader, the process calls setsid(2) itself without forking, and the pid envd
reports is then the session and group id of the whole command) and reaches the tree
with these snippets, run as separate commands in the same sandbox. A process belongs to the tree when its session
or process group is the command's, or when its parent does (a child that called ``setsid`` itself); the scan reads
``/proc/*/stat`` with ``awk``, both in every Linux image E2B builds templates from.
"""

from __future__ import annotations

import shlex

#: Prints the live (not zombie) processes of the tree rooted at session ``$1``: ``pid start-time`` per line.
_TREE = r"""tree() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
    { pid = substr($0, 1, index($0, " (") - 1); sub(/^.*\) /, "")
      if ($1 == "Z") next
      ppid[pid] = $2; start[pid] = $20; all[pid] = 1
      if (pid == root || $3 == root || $4 == root) keep[pid] = 1 }
    END { do { grew = 0; for (p in all) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
          for (p in keep) print p, start[p] }'
}
pids() { tree "$1" | cut -d" " -f1; }
sig() { p=$(pids "$1"); [ -z "$p" ] || kill -s "$2" $p 2>/dev/null; return 0; }
"""


def signal_tree(root: int, signal: str) -> str:
    """Send ``signal`` (``STOP``, ``CONT``) to every process of the tree, twice: a process forked while the first
    pass ran is caught by the second."""
    return f"{_TREE}sig {root} {signal}; sig {root} {signal}"


def stop_tree(root: int, grace_s: float) -> str:
    """SIGTERM the tree (thawed, so stopped processes get it), then SIGKILL what is left after ``grace_s``; the
    command ends when nothing of the tree runs."""
    ticks = max(1, round(grace_s / 0.05))
    return (
        f"{_TREE}r={root}; sig $r TERM; sig $r CONT; i=0\n"
        f'while [ -n "$(pids $r)" ] && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done\n'
        'while [ -n "$(pids $r)" ]; do sig $r KILL; sleep 0.05; done'
    )


def list_tree(root: int) -> str:
    """Print ``pid start-time command line`` for each live process of the tree (for tests and diagnostics)."""
    return (
        f"{_TREE}tree {root} | while read -r p s; do "
        "c=$(tr '\\0' ' ' 2>/dev/null < /proc/$p/cmdline) && echo \"$p $s ${c% }\"; done; true"
    )


def alive(processes: list[tuple[int, str]]) -> str:
    """Print the ``pid`` of each ``(pid, start-time)`` that still runs (same start time: not a reused pid)."""
    checks = " ".join(f"{pid}:{shlex.quote(start)}" for pid, start in processes)
    return (
        f"for e in {checks}; do p=${{e%%:*}}; s=${{e#*:}}; "
        "l=$(cat /proc/$p/stat 2>/dev/null) || continue; set -- ${l##*) }; "
        '[ "$1" != Z ] && [ "${20}" = "$s" ] && echo $p; done; true'
    )


def launch(command: str, workdir: str) -> str:
    """The line envd runs (under ``bash -l -c``): make the working directory, enter it, and run ``command`` with
    ``/bin/sh -c`` as the leader of a new session, in place of the shell envd started (so the pid it reports is the
    tree's session id and the exit status is the command's)."""
    quoted = shlex.quote(workdir)
    return f"mkdir -p -- {quoted} && cd -- {quoted} && exec setsid /bin/sh -c {shlex.quote(command)}"
