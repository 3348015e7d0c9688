"""kill -9 trials (issue 9, points 4 and 9): ``agentdeck run --headless --json`` on a 40-task workflow (python steps
and shell commands, output, declared outputs, a task that fails its first attempt) is killed with SIGKILL at random
moments, then ``agentdeck resume`` finishes it. Each trial checks (``bench.recovery_bench.run_trial``):

- every event printed live before the kill is stored with the same id, seq, type, task and data — after the kill
  and still after the resume (a seq once published names one event forever);
- the stored stream is gap-free, no seq twice;
- a task printed as completed was stored completed, never runs again (its side effect happened once, in the
  killed process) and is completed at the end; every task completes exactly once overall.

A few trials at chosen moments run by default; 50 at seeded random moments (delays and event counts) with
``-m slow``. ``agentdeck bench`` reports the same trials as figures (the ``recovery_kill9`` section).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.recovery_bench import Trial, Trigger, random_triggers, run_trial


def failures(trials: list[Trial]) -> str:
    return "\n".join(f"{t.trigger} ({t.killed}): {t.problems}" for t in trials if t.problems)


#: Right after the workflow was announced, in the thick of it, later on by time. The run lasts about 1.3 s from its
#: first event on an idle 2-core machine (its steps sleep, so no machine is much faster) and longer under load: a kill
#: 0.4 s in lands while it runs everywhere (0.9 s did not on an idle machine: the run had finished).
CHOSEN = [Trigger(events=1), Trigger(events=90), Trigger(delay=0.4)]


@pytest.mark.parametrize("trigger", CHOSEN, ids=str)
def test_a_run_killed_at_a_chosen_moment_resumes_with_nothing_lost_rerun_or_renumbered(
    tmp_path: Path, trigger: Trigger
) -> None:
    trial = run_trial(tmp_path, trigger)
    assert trial.ok, failures([trial])
    assert trial.killed == "while it ran", f"the kill landed {trial.killed}: the trial tested little"
    assert trial.printed >= (trigger.events or 1)


@pytest.mark.slow
def test_50_runs_killed_at_random_moments_resume_with_nothing_lost_rerun_or_renumbered(tmp_path: Path) -> None:
    trials = []
    for number, trigger in enumerate(random_triggers(50, seed=2026)):
        folder = tmp_path / f"trial-{number}"
        folder.mkdir()
        trials.append(run_trial(folder, trigger))
    assert not failures(trials), failures(trials)
    during = sum(1 for t in trials if t.killed == "while it ran")
    assert during >= 35, f"only {during} of 50 kills landed while the workflow ran"
    assert sum(t.completed_at_kill for t in trials) > 0
