"""The engine through the real ``agentdeck`` command line, as a user meets it in two terminals.

Every test runs the installed console script in subprocesses against its own temporary ``surrealkv://`` store
(``--db``, ``AGENTDECK_DB``, or the default under a temporary ``XDG_DATA_HOME``) and asserts what a user sees:
the ``--json`` event stream, exit codes, stderr, ``workflows show``, side effects and the process table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.procstate import frozen

AGENTDECK = str(Path(sys.executable).parent / "agentdeck")
WORKFLOWS = Path(__file__).parent / "workflows"

Event = dict[str, Any]


# ---- helpers ------------------------------------------------------------------------------------------------------


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for one test: data dir under ``tmp_path``, no inherited ``AGENTDECK_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
    env.update({"XDG_DATA_HOME": str(tmp_path / "xdg"), "COLUMNS": "200", **extra})
    return env


def agentdeck(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTDECK, *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


def json_lines(stdout: str) -> list[Event]:
    """Every stdout line parsed as one JSON object; fails naming the first line that is not one."""
    events = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stdout line {number} is not JSON: {line!r}")
        assert isinstance(value, dict), f"stdout line {number} is not a JSON object: {line!r}"
        events.append(value)
    return events


def assert_gap_free(events: list[Event], first: int = 1) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(events))), f"seq is not gap-free from {first}: {seqs}"


def tick(event: Event) -> int | None:
    """The last counter value of the ``tick N`` output lines of the counting task in an event, else None."""
    if event.get("type") != "task.output" or event.get("task") != "count":
        return None
    lines = event["data"].get("lines") or [event["data"].get("line", "")]
    found = [re.fullmatch(r"tick (\d+)", str(line)) for line in lines]
    ticks = [int(match.group(1)) for match in found if match]
    return ticks[-1] if ticks else None


class RunningWorkflow:
    """``agentdeck run FILE --headless --json`` in the background, its stdout read on a thread as it arrives."""

    def __init__(self, args: list[str], env: dict[str, str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("w")
        self.proc = subprocess.Popen(
            [AGENTDECK, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.events: list[Event] = []
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="agentdeck-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                with contextlib.suppress(json.JSONDecodeError):  # kept in self.lines; tests assert pure JSON
                    self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def snapshot(self) -> list[Event]:
        with self._changed:
            return list(self.events)

    def wait_for(self, predicate: Callable[[Event], bool], what: str, since: int = 0, timeout: float = 60) -> Event:
        """The first event from index ``since`` on that matches; fails if the stream ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            index = since
            while True:
                for event in self.events[index:]:
                    if predicate(event):
                        return event
                index = len(self.events)
                if self._closed:
                    pytest.fail(f"the run ended before {what}; stderr: {self.stderr()}; last: {self.events[-3:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {what} within {timeout}s; last events: {self.events[-3:]}")
                self._changed.wait(remaining)

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        self._stderr.close()


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_leftovers(marker: str) -> None:
    """Cleanup after a failed test: end the processes this test started (its unique marker), by pid."""
    for proc in processes_with(marker):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


# ---- run --headless --json ----------------------------------------------------------------------------------------


def test_run_headless_json_stdout_is_only_a_gap_free_event_stream(tmp_path: Path) -> None:
    greeting = f"hello-{uuid.uuid4().hex[:8]}"
    env = clean_env(tmp_path)
    result = agentdeck(
        "run", str(WORKFLOWS / "cli_greeting.yaml"), "--headless", "--json",
        "--db", f"surrealkv://{tmp_path / 'state.db'}", "--var", f"greeting={greeting}",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert events[0]["type"] == "workflow.created"
    workflow = events[0]["workflow"]
    assert re.fullmatch(r"[\w-]+", workflow)
    assert all(e["workflow"] == workflow for e in events)
    assert_gap_free(events)
    assert events[-1]["type"] == "workflow.completed"
    for event in events:
        assert {"id", "ts", "seq", "type", "workflow", "data"} <= event.keys(), event
    outputs = [
        line for e in events if e["type"] == "task.output" and e.get("task") == "greet" for line in e["data"]["lines"]
    ]
    assert f"greeting: {greeting}" in outputs, "the --var value did not reach the command"
    completed = [e["task"] for e in events if e["type"] == "task.completed"]
    assert completed == ["greet", "check"]
    # Human messages go to stderr, and name the workflow.
    assert workflow in result.stderr
    assert "Traceback" not in result.stderr


def test_run_of_a_failing_workflow_exits_1_and_skips_its_dependants(tmp_path: Path) -> None:
    env = clean_env(tmp_path, AGENTDECK_DB=f"surrealkv://{tmp_path / 'state.db'}")
    result = agentdeck("run", str(WORKFLOWS / "cli_failing.yaml"), "--headless", "--json", env=env)
    assert result.returncode == 1, result.stderr
    events = json_lines(result.stdout)
    assert_gap_free(events)
    assert events[0]["type"] == "workflow.created"
    assert events[-1]["type"] == "workflow.failed"
    assert ("task.failed", "breaks") in [(e["type"], e.get("task")) for e in events]
    assert ("task.skipped", "never") in [(e["type"], e.get("task")) for e in events]
    assert not any(e["type"] == "task.started" and e.get("task") == "never" for e in events)
    shown = agentdeck("workflows", "show", events[0]["workflow"], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "failed"
    assert {t["key"]: t["status"] for t in state["tasks"]} == {"breaks": "failed", "never": "skipped"}


def test_run_without_json_prints_human_lines_and_no_json(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    result = agentdeck(
        "run", str(WORKFLOWS / "cli_greeting.yaml"), "--headless",
        "--db", f"surrealkv://{tmp_path / 'state.db'}", "--var", "greeting=plain-text",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "greeting: plain-text" in result.stdout
    assert not any(line.lstrip().startswith("{") for line in result.stdout.splitlines())


# ---- controls from a second terminal, on the default embedded database ---------------------------------------------


@dataclass
class CountingRun:
    run: RunningWorkflow
    workflow: str
    env: dict[str, str]
    marker: str  # in the counting command's command line, and nowhere else


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[CountingRun]:
    """The counting workflow running on the DEFAULT database (``$XDG_DATA_HOME/agentdeck/state.db``, no --db),
    once ``workflow.created`` and the first ticks were seen."""
    marker = f"agentdeck-test-{uuid.uuid4().hex}"
    env = clean_env(tmp_path)
    run = RunningWorkflow(
        ["run", str(WORKFLOWS / "cli_counter.yaml"), "--headless", "--json", "--var", f"marker={marker}"],
        env,
        tmp_path / "run.stderr",
    )
    try:
        created = run.wait_for(lambda e: True, "the first event")
        assert created["type"] == "workflow.created", created
        run.wait_for(lambda e: (tick(e) or 0) >= 3, "tick 3")
        assert (tmp_path / "xdg" / "agentdeck" / "state.db").is_dir(), "the run did not use the default database"
        assert processes_with(marker), "the counting command is not in the process table"
        yield CountingRun(run, created["workflow"], env, marker)
    finally:
        run.stop()
        kill_leftovers(marker)


def test_pause_resume_cancel_and_list_from_a_second_terminal(counting: CountingRun) -> None:
    run, workflow, env, marker = counting.run, counting.workflow, counting.env, counting.marker

    # The database is locked by the runner: the listing is served by it, through its control socket.
    listed = agentdeck("workflows", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {w["id"]: w for w in json.loads(listed.stdout)}
    assert rows[workflow]["status"] == "running"
    assert rows[workflow]["resumable"] is False

    # pause: the counter stops printing.
    paused = agentdeck("workflows", "pause", workflow, env=env)
    assert paused.returncode == 0, paused.stderr
    mark = run.wait_for(lambda e: e["type"] == "workflow.paused", "workflow.paused")
    time.sleep(0.5)  # lines already in the pipe when the process was frozen may still arrive
    settled = run.snapshot()
    time.sleep(1.0)  # ~20 ticks would be printed in this second if the process were not frozen
    during = run.snapshot()[len(settled) :]
    assert [tick(e) for e in during if tick(e) is not None] == [], "the task kept printing while paused"
    last = max(t for t in (tick(e) for e in settled) if t is not None)
    assert mark in settled

    shown = agentdeck("workflows", "show", workflow, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "paused"
    assert {t["key"]: t["status"] for t in state["tasks"]}["count"] == "paused"

    # resume: the same process continues counting from where it stopped (not restarted from 1).
    resumed = agentdeck("workflows", "resume", workflow, env=env)
    assert resumed.returncode == 0, resumed.stderr
    following = run.wait_for(lambda e: tick(e) is not None, "a tick after resume", since=len(settled))
    assert tick(following) == last + 1
    run.wait_for(lambda e: (tick(e) or 0) >= last + 5, "more ticks after resume")
    state = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    assert state["status"] == "running"
    assert {t["key"]: t["status"] for t in state["tasks"]} == {"count": "running", "after": "pending"}

    # cancel: the run ends with exit code 1 and nothing of the task is left running.
    cancelled = agentdeck("workflows", "cancel", workflow, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert run.wait_exit(timeout=60) == 1, run.stderr()
    assert processes_with(marker) == [], "processes of the cancelled task are still running"
    json_lines("".join(run.lines))  # stdout stayed pure JSON throughout
    assert_gap_free(run.events)


def test_an_unknown_id_asked_of_a_running_owner_is_a_clear_error_and_exit_2(counting: CountingRun) -> None:
    for args in (["workflows", "pause", "wf-does-not-exist"], ["workflows", "show", "wf-does-not-exist"]):
        result = agentdeck(*args, env=counting.env)  # served by the owner: its socket answers with an error
        assert result.returncode == 2, (args, result.stderr)
        assert "wf-does-not-exist" in result.stderr and "Traceback" not in result.stderr
    assert counting.run.proc.poll() is None, "a bad request stopped the owner"
    shown = agentdeck("workflows", "show", counting.workflow, "--json", env=counting.env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "running"


def test_cancel_of_a_paused_workflow_kills_its_frozen_processes_and_ends_the_stream(counting: CountingRun) -> None:
    run, workflow, env, marker = counting.run, counting.workflow, counting.env, counting.marker
    assert agentdeck("workflows", "pause", workflow, env=env).returncode == 0
    run.wait_for(lambda e: e["type"] == "workflow.paused", "workflow.paused")
    shells = [p for p in processes_with(marker) if p.name() == "sh"]
    assert shells, "the counting shell is gone"
    # The shell may sit in state D, waiting for its stopped vfork child (dash starts commands so): frozen as well.
    assert all(frozen(p) for p in shells), [(p.pid, p.status()) for p in shells]

    cancelled = agentdeck("workflows", "cancel", workflow, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert run.wait_exit(timeout=60) == 1, run.stderr()
    assert processes_with(marker) == [], "a frozen process of the cancelled task survived"

    # Stored state, read by a fresh process now that the runner is gone.
    shown = agentdeck("workflows", "show", workflow, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "cancelled"
    assert {t["key"]: t["status"] for t in state["tasks"]} == {"count": "cancelled", "after": "skipped"}

    events = json_lines("".join(run.lines))
    assert_gap_free(events)
    assert ("task.skipped", "after") in [(e["type"], e.get("task")) for e in events]
    # The terminal workflow event comes last: a subscriber that stops at it must not miss the skips.
    assert events[-1]["type"] == "workflow.cancelled", [(e["seq"], e["type"], e.get("task")) for e in events[-3:]]


# ---- bad input -----------------------------------------------------------------------------------------------------

BAD_FILES = {
    "unknown-agent": ("name: bad\nagents:\n  sh: {kind: shell}\ntasks:\n  - id: a\n    agent: nobody\n", 6, "nobody"),
    "unknown-key": (
        "name: bad\nagents:\n  sh: {kind: shell}\ntasks:\n  - id: a\n    agent: sh\n    run: echo\n    colour: red\n",
        8,
        "colour",
    ),
    "missing-dependency": (
        "name: bad\nagents:\n  sh: {kind: shell}\ntasks:\n  - id: a\n    agent: sh\n    run: echo\n"
        "    depends_on: [ghost]\n",
        8,
        "ghost",
    ),
    "cycle": (
        "name: bad\nagents:\n  sh: {kind: shell}\ntasks:\n"
        "  - id: a\n    agent: sh\n    run: echo\n    depends_on: [b]\n"
        "  - id: b\n    agent: sh\n    run: echo\n    depends_on: [a]\n",
        5,
        "cycle",
    ),
    "broken-yaml": ("name: bad\ntasks: [unclosed\n", 3, "YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_validate_reports_file_line_message_and_exits_2(tmp_path: Path, case: str) -> None:
    text, line, word = BAD_FILES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    result = agentdeck("validate", str(path), env=clean_env(tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{line}: "), first
    assert word in first


def test_validate_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        "name: good\nagents:\n  sh: {kind: shell}\ntasks:\n  - {id: a, agent: sh, run: echo a}\n"
        "  - {id: b, agent: sh, run: echo b, depends_on: [a]}\n"
    )
    result = agentdeck("validate", str(path), env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_run_of_a_bad_file_exits_2_before_anything_runs(tmp_path: Path) -> None:
    made = tmp_path / "made-it"
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nagents:\n  sh: {kind: shell}\ntasks:\n"
        f"  - id: first\n    agent: sh\n    run: touch {made}\n"
        "  - id: second\n    agent: sh\n    run: echo\n    depends_on: [first, ghost]\n"
    )
    db = tmp_path / "state.db"
    result = agentdeck("run", str(path), "--headless", "--json", "--db", f"surrealkv://{db}", env=clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{path}:11: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not made.exists(), "a task of an invalid workflow ran"
    if db.exists():  # opening the store is allowed; storing a workflow is not
        listed = agentdeck("workflows", "list", "--json", "--db", f"surrealkv://{db}", env=clean_env(tmp_path))
        assert json.loads(listed.stdout) == []


def test_run_with_a_malformed_var_exits_2(tmp_path: Path) -> None:
    result = agentdeck(
        "run", str(WORKFLOWS / "cli_greeting.yaml"), "--headless", "--db", "mem://", "--var", "no-equals-sign",
        env=clean_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "no-equals-sign" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["workflows", "pause", "wf-nope"],
        ["workflows", "resume", "wf-nope"],
        ["workflows", "cancel", "wf-nope"],
        ["workflows", "show", "wf-nope"],
        ["workflows", "retry", "wf-nope", "--task", "a"],
        ["workflows", "rollback", "wf-nope", "--to", "cp-nope"],
        ["checkpoints", "list", "wf-nope"],
        ["resume", "wf-nope", "--headless"],
    ],
)
def test_an_unknown_workflow_id_is_a_clear_error_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    env = clean_env(tmp_path, AGENTDECK_DB=f"surrealkv://{tmp_path / 'state.db'}")
    result = agentdeck(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "wf-nope" in result.stderr or "cp-nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


# ---- checkpoints, rollback and retry on a finished workflow -------------------------------------------------------


def log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_checkpoints_rollback_and_retry_of_a_finished_workflow(tmp_path: Path) -> None:
    log = tmp_path / "side-effects.log"
    env = clean_env(tmp_path, AGENTDECK_DB=f"surrealkv://{tmp_path / 'state.db'}")
    first = agentdeck("run", str(WORKFLOWS / "cli_chain.yaml"), "--headless", "--json", "--var", f"log={log}", env=env)
    assert first.returncode == 0, first.stderr
    workflow = json_lines(first.stdout)[0]["workflow"]
    assert log_lines(log) == ["a", "b", "c", "d"]

    listed = agentdeck("checkpoints", "list", workflow, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    checkpoints = json.loads(listed.stdout)
    assert [c["task"] for c in checkpoints] == ["a", "b", "c", "d"], checkpoints
    assert [c["number"] for c in checkpoints] == [1, 2, 3, 4]
    human = agentdeck("checkpoints", "list", workflow, env=env)
    assert human.returncode == 0 and all(c["id"] in human.stdout for c in checkpoints)
    # DONE counts what was completed at each checkpoint (as the timeline does), not the one task a delta names.
    assert [row.split()[4] for row in human.stdout.splitlines()[1:]] == ["1", "2", "3", "4"], human.stdout
    assert [int(row.split()[5]) for row in human.stdout.splitlines()[1:]] == [c["event_seq"] for c in checkpoints]

    # Roll back to "b completed": c and d run again, a and b do not. No owner runs it: the CLI runs it itself.
    after_b = checkpoints[1]["id"]
    rolled = agentdeck("workflows", "rollback", workflow, "--to", after_b, env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert log_lines(log) == ["a", "b", "c", "d", "c", "d"]
    state = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    assert state["status"] == "completed"
    assert {t["status"] for t in state["tasks"]} == {"completed"}
    # History is kept: the earlier checkpoints are still listed, and later ones were added.
    again = json.loads(agentdeck("checkpoints", "list", workflow, "--json", env=env).stdout)
    assert [c["id"] for c in again[:4]] == [c["id"] for c in checkpoints]
    assert len(again) > 4

    # Retry b: exactly b runs again, with its upstream output as it is; its completed dependants stay done.
    retried = agentdeck("workflows", "retry", workflow, "--task", "b", env=env)
    assert retried.returncode == 0, retried.stderr
    assert log_lines(log) == ["a", "b", "c", "d", "c", "d", "b"]
    state = json.loads(agentdeck("workflows", "show", workflow, "--json", env=env).stdout)
    assert state["status"] == "completed"
    assert {t["status"] for t in state["tasks"]} == {"completed"}

    # Retrying an unknown task, and rolling back to an unknown checkpoint, are bad input.
    bad_task = agentdeck("workflows", "retry", workflow, "--task", "zzz", env=env)
    assert bad_task.returncode == 2 and "zzz" in bad_task.stderr and "Traceback" not in bad_task.stderr
    bad_cp = agentdeck("workflows", "rollback", workflow, "--to", "cp-zzz", env=env)
    assert bad_cp.returncode == 2 and "cp-zzz" in bad_cp.stderr and "Traceback" not in bad_cp.stderr
    assert log_lines(log) == ["a", "b", "c", "d", "c", "d", "b"]
