"""The recovery bench's harness (bench/recovery_bench.py): a tiny run of it reports what it saw, and its checks
flag what they are there to catch. Never its speed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.recovery_bench import Trial, Trigger, compare_live, figures, run_trials, workflow_spec
from db.models import Event
from engine.spec import WorkflowSpec


def event(seq: int, id: str, type: str = "task.started", task: str | None = "k01") -> Event:
    return Event(id=id, ts=datetime.now(UTC), seq=seq, type=type, workflow="wf-x", task=task, data={"attempt": 1})


def printed(e: Event) -> dict[str, object]:
    return e.to_json_dict()


def test_the_workflow_is_valid_and_mixes_python_and_shell(tmp_path: Path) -> None:
    spec = WorkflowSpec.model_validate(workflow_spec(tmp_path / "log", n=40))
    spec.validate_graph()
    kinds = {spec.agents[t.agent].kind for t in spec.tasks}
    assert kinds == {"python", "shell"} and len(spec.tasks) == 40
    assert any(t.retries for t in spec.tasks), "no task exercises a retry"


def test_a_tiny_run_reports_its_trial() -> None:
    trials = run_trials(1, seed=0, n=8, triggers=[Trigger(events=12)])
    result = figures(trials)
    assert result["trials"] == 1 and result["met"] is True, result
    assert result["killed_while_running"] == 1
    assert result["events_printed_before_kill"] >= 12
    assert result["rerun"] == result["lost"] == result["seq_reused"] == result["printed_not_stored"] == 0
    assert 0 <= result["completed_before_kill"] < 8


def test_the_checks_flag_a_renumbered_an_unstored_and_a_duplicated_event() -> None:
    stored = [event(1, "a"), event(2, "b"), event(3, "c")]
    trial = Trial("by hand")
    compare_live(trial, [printed(e) for e in stored], stored, "now")
    assert trial.ok, trial.problems

    reused = Trial("by hand")
    compare_live(reused, [printed(event(2, "other"))], stored, "now")
    assert reused.seq_reused == [2] and not reused.ok

    unstored = Trial("by hand")
    compare_live(unstored, [printed(event(4, "d"))], stored, "now")
    assert unstored.unstored == [4] and not unstored.ok

    twice = Trial("by hand")
    compare_live(twice, [printed(stored[0])], [*stored, event(3, "c2")], "now")
    assert twice.gaps == 1 and not twice.ok

    result = figures([trial, reused, unstored, twice])
    assert result["met"] is False and result["seq_reused"] == 1 and result["printed_not_stored"] == 1
    assert len(result["failed_trials"]) == 3
