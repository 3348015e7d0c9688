"""Checking big workflows stays linear: 50,000-task chains, fan-ins and cycles finish well inside their timeouts.

Cycle detection used to run a search per task (a 5,000-task chain took 22 s, 50,000 did not finish in 15 min).
The timeouts are generous ceilings for a loaded 2-core machine, not speed assertions: `agentdeck bench` and the
report measure speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.spec import SpecError, SpecErrors, WorkflowSpec, parse_workflow

N = 50_000


def chain_yaml(n: int, *, close_the_loop: bool = False) -> str:
    lines = ["name: big", "agents:", "  a: {kind: shell}", "tasks:"]
    for i in range(n):
        lines.append(f"  - {{id: t{i}, agent: a, run: 'true'" + (f", depends_on: [t{i - 1}]}}" if i else "}"))
    if close_the_loop:
        lines[4] = f"  - {{id: t0, agent: a, run: 'true', depends_on: [t{n - 1}]}}"
    return "\n".join(lines) + "\n"


def spec_of(depends: list[list[str]]) -> WorkflowSpec:
    """A spec of shell tasks t0..tN-1 with the given dependencies, built in Python."""
    tasks = [{"id": f"t{i}", "agent": "a", "run": "x", "depends_on": deps} for i, deps in enumerate(depends)]
    return WorkflowSpec.model_validate({"name": "big", "agents": {"a": {"kind": "shell"}}, "tasks": tasks})


@pytest.mark.slow  # tests/integration/test_cli_bad_input.py validates the same file through the CLI
@pytest.mark.timeout(120)
def test_a_50000_task_chain_file_validates() -> None:
    spec = parse_workflow(chain_yaml(N), "big.yaml")
    assert spec.topological_order() == [f"t{i}" for i in range(N)]
    assert len(spec.downstream("t0")) == N - 1
    assert spec.task(f"t{N - 1}").depends_on == [f"t{N - 2}"]


@pytest.mark.timeout(120)
def test_a_50000_task_cycle_is_named_at_its_first_task_and_cut_short() -> None:
    with pytest.raises(SpecError) as caught:
        parse_workflow(chain_yaml(N, close_the_loop=True), "big.yaml")
    error = caught.value
    assert error.line == 5
    # The shortest cycle through t0 is the whole chain; the message shows its ends.
    assert error.message == (
        f"cycle: t0 -> t{N - 1} -> t{N - 2} -> t{N - 3} -> t{N - 4} -> t{N - 5} -> t{N - 6} -> t{N - 7} -> t{N - 8} "
        f"-> ... ({N - 10:,} more) -> t1 -> t0"
    )


@pytest.mark.timeout(120)
def test_a_50000_task_fan_in_validates_and_orders() -> None:
    spec = spec_of([[] for _ in range(N - 1)] + [[f"t{i}" for i in range(N - 1)]])
    spec.validate_graph()
    order = spec.topological_order()
    assert order[-1] == f"t{N - 1}" and len(order) == N
    assert spec.downstream("t0") == {f"t{N - 1}"}


@pytest.mark.timeout(120)
def test_25000_separate_cycles_are_each_named_in_file_order() -> None:
    # t0 <-> t1, t2 <-> t3, ...: one cycle per pair, reported in the order their first task comes.
    spec = spec_of([[f"t{i + 1}"] if i % 2 == 0 else [f"t{i - 1}"] for i in range(N)])
    with pytest.raises(SpecErrors) as caught:
        spec.validate_graph()
    messages = [error.message for error in caught.value.errors]
    assert len(messages) == N // 2
    assert messages[:2] == ["cycle: t0 -> t1 -> t0", "cycle: t2 -> t3 -> t2"]
    with pytest.raises(SpecError, match=r"^cycle: t0 -> t1 -> t0$"):
        spec.topological_order()


@pytest.mark.timeout(120)
def test_50000_unknown_dependencies_are_all_reported_and_the_first_get_hints() -> None:
    spec = spec_of([[f"t{i}x"] for i in range(N)])  # every task depends on a typo of its own id
    with pytest.raises(SpecErrors) as caught:
        spec.validate_graph()
    errors = caught.value.errors
    assert len(errors) == N
    assert errors[0].message.startswith("task 't0' depends on unknown task 't0x' (did you mean 't")
    # Hints share a budget: the last of 50,000 typos is reported plainly instead of costing another search.
    assert errors[-1].message == f"task 't{N - 1}' depends on unknown task 't{N - 1}x'"
    assert "'t0'?" not in errors[0].message  # a task's own id, the closest match, is never suggested for it


class CountingList(list[Any]):
    """A task list that counts how often it is walked through."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        type(self).walks += 1
        return super().__iter__()


@pytest.mark.timeout(120)
def test_looking_up_every_task_by_id_walks_the_task_list_once() -> None:
    spec = spec_of([[] for _ in range(N)])
    spec.tasks = CountingList(spec.tasks)
    assert all(spec.task(f"t{i}").id == f"t{i}" for i in range(N))
    assert CountingList.walks == 1  # to build the index; a scan per lookup was 50,000 walks
    spec.tasks = spec.tasks[: N // 2]  # the index follows a replaced task list
    with pytest.raises(KeyError):
        spec.task(f"t{N - 1}")
