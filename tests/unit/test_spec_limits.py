"""Hostile and odd workflow files: each is refused with one located line (a `SpecError`), never a hang or a crash.

Files that could block or never end (a FIFO, a symlink to /dev/zero) are loaded in a thread with a deadline, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import random
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.spec import (
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_PROBLEMS,
    MAX_TASK_ID_LENGTH,
    SpecError,
    WorkflowSpec,
    load_workflow,
    parse_workflow,
)

VALID = "name: w\nagents: {s: {kind: shell}}\ntasks:\n  - {id: a, agent: s, run: x}\n"


def parse(text: str) -> WorkflowSpec:
    return parse_workflow(textwrap.dedent(text).lstrip("\n"), "wf.yaml")


def problem(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse(text)
    return caught.value


def finishes(work: Callable[[], Any], within: float = 20.0) -> Any:
    """Run ``work`` in a thread; fail (not hang) if it has not returned or raised in ``within`` seconds."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("value", work()))
        except BaseException as exc:  # the test looks at what it was
            outcome.append(("error", exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(within)
    assert outcome, f"still running after {within} s"
    return outcome[0]


def refused(path: Path) -> SpecError:
    kind, value = finishes(lambda: load_workflow(path))
    assert kind == "error" and isinstance(value, SpecError), value
    assert "\n" not in str(value)
    return value


# -- files that are not files ---------------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "wf.yaml"
    os.mkfifo(fifo)
    try:
        error = refused(fifo)
    finally:
        # Had the loader blocked in open(), this lets it go (a writer may open once a reader waits).
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert str(error) == f"{fifo}: is a FIFO (named pipe), not a regular file; workflow files must be regular files"


def test_a_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    link = tmp_path / "wf.yaml"
    link.symlink_to("/dev/zero")
    error = refused(link)
    assert str(error) == f"{link}: is a character device, not a regular file; workflow files must be regular files"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert str(refused(tmp_path)) == f"{tmp_path}: is a directory, not a workflow file"


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "wf.yaml"
    with big.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk space used
    error = refused(big)
    assert str(error) == f"{big}: the file is {MAX_FILE_BYTES + 1:,} bytes; workflow files are limited to 10 MiB"


def test_a_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(VALID + "#" * (MAX_FILE_BYTES - len(VALID) - 1) + "\n")
    assert load_workflow(path).name == "w"


# -- text that is not YAML text ---------------------------------------------------------------------------------------


def test_non_utf8_bytes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(b"name: w\ndescription: caf\xe9\n")
    assert str(refused(path)) == f"{path}:2: the file is not UTF-8 text"


def test_a_nul_byte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(b"name: w\n\ntasks: [\x00]\n")
    assert str(refused(path)) == f"{path}:3: the file contains the control character U+0000; is it a text file?"


@pytest.mark.parametrize("seed", range(5))
def test_binary_junk_is_refused_in_one_line(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(random.Random(seed).randbytes(64 * 1024))
    assert str(refused(path)).startswith(f"{path}:")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n...\n"])
def test_an_empty_file_says_so(tmp_path: Path, text: str) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    assert str(refused(path)) == f"{path}:1: the file is empty; a workflow needs at least 'name' and 'tasks'"


def test_a_second_document_is_refused_at_its_line() -> None:
    error = problem(VALID + "---\nname: other\n")
    assert str(error) == "wf.yaml:5: a second YAML document ('---'); a workflow file holds exactly one"


# -- YAML that expands or nests without end ---------------------------------------------------------------------------


def test_a_billion_laughs_alias_bomb_is_refused_quickly() -> None:
    lines = ["name: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append("tasks: [{id: a, agent: s}]")
    kind, error = finishes(lambda: parse_workflow("\n".join(lines), "wf.yaml"), within=10)
    assert kind == "error" and isinstance(error, SpecError)
    assert error.line == 8  # where the expansion passes the limit, not where the bomb goes off later
    assert error.message == f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (the limit)"


def test_aliases_within_the_limit_are_fine() -> None:
    spec = parse("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: a, agent: s, run: x, input: &big {values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}
          - {id: b, agent: s, run: x, input: *big}
    """)
    assert spec.task("b").input == spec.task("a").input == {"values": list(range(1, 11))}


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: w\ntasks: &t [*t]\n", 2),
        ("name: w\nx: &m {a: {b: *m}}\ntasks: []\n", 2),
    ],
)
def test_a_recursive_alias_is_refused(text: str, line: int) -> None:
    error = problem(text)
    assert error.line == line and "(a recursive alias)" in error.message


def test_an_alias_without_its_anchor_is_located() -> None:
    error = problem("name: w\ntasks: [*nowhere]\n")
    assert str(error) == "wf.yaml:2: alias '*nowhere' refers to no anchor ('&nowhere' must come first)"


def test_250_deep_flow_nesting_is_refused_at_its_line() -> None:
    error = problem("name: w\ntasks:\n  - id: a\n    input: " + "[" * 250 + "]" * 250 + "\n")
    assert str(error) == f"wf.yaml:4: nested more than {MAX_DEPTH} levels deep (the limit)"


def test_250_deep_block_nesting_is_refused_at_its_line() -> None:
    body = "".join("  " * (depth + 3) + f"k{depth}:\n" for depth in range(250))
    error = problem("name: w\ntasks:\n  - id: a\n    input:\n" + body)
    # The root, tasks, the task and input are four levels; input (level 4) starts at line 5, one level a line.
    first_too_deep = 5 + (MAX_DEPTH + 1 - 4)
    assert str(error) == f"wf.yaml:{first_too_deep}: nested more than {MAX_DEPTH} levels deep (the limit)"


def test_nesting_built_from_aliases_counts_too() -> None:
    error = problem(f"name: w\na: &a {'[' * 60}{']' * 60}\nb: {'[' * 41}*a{']' * 41}\n")
    assert error.line == 3 and error.message == f"alias '*a' nests more than {MAX_DEPTH} levels deep (the limit)"


def test_nesting_up_to_the_limit_is_fine() -> None:
    def workflow(lists: int) -> str:  # the root, tasks, the task and input are four levels
        nested = "[" * lists + "]" * lists
        return (
            f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - {{id: a, agent: s, run: x, input: {{v: {nested}}}}}"
        )

    value = parse_workflow(workflow(MAX_DEPTH - 4), "wf.yaml").tasks[0].input["v"]
    depth = 0
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH - 5  # the innermost list is empty
    with pytest.raises(SpecError, match="nested more than"):
        parse_workflow(workflow(MAX_DEPTH - 3), "wf.yaml")


# -- keys and scalars -------------------------------------------------------------------------------------------------


def test_a_mapping_as_a_key_is_refused() -> None:
    error = problem("name: w\n? [a, b]\n: c\ntasks: []\n")
    assert str(error) == "wf.yaml:2: a mapping key must be a plain value, not a mapping or a list"


def test_keys_that_read_the_same_are_duplicates() -> None:
    error = problem("name: w\ntasks: []\nagents: {1: {kind: shell}, '1': {kind: shell}}\n")
    assert str(error) == "wf.yaml:3: duplicate key '1'"


def test_merge_keys_let_written_keys_and_earlier_mappings_win() -> None:
    spec = parse("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - &one {id: a, agent: s, run: one, retries: 1}
          - &two {id: b, agent: s, run: two, retries: 2, timeout: 5}
          - {<<: [*one, *two], id: c}
    """)
    merged = spec.task("c")
    assert (merged.run, merged.retries, merged.timeout) == ("one", 1, 5.0)


def test_a_merge_of_a_scalar_is_refused() -> None:
    error = problem("name: w\ntasks:\n  - {<<: 3, id: a}\n")
    assert str(error) == "wf.yaml:3: a merge key '<<' takes a mapping or a list of mappings"


def test_yaml_1_2_core_scalars() -> None:
    spec = parse("""
        name: w
        agents: {p: {kind: python, callable: "m:f"}}
        tasks:
          - id: a
            agent: p
            input:
              octal: 0o17
              hex: 0x1F
              exp: 1e3
              neg: -2
              inf: -.inf
              none: ~
              text: !!str 10
              yes: yes
              date: 2024-01-01
              quoted: "true"
              tagged: !custom value
              block: |
                two
                lines
    """)
    assert spec.tasks[0].input == {
        "octal": 15, "hex": 31, "exp": 1000.0, "neg": -2, "inf": float("-inf"), "none": None, "text": "10",
        "yes": "yes", "date": "2024-01-01", "quoted": "true", "tagged": "value", "block": "two\nlines\n",
    }  # fmt: skip


def test_a_core_tag_that_does_not_fit_is_located() -> None:
    assert str(problem("name: w\ntasks: [{id: a, agent: s, retries: !!int many}]\n")) == (
        "wf.yaml:2: '!!int many' is not a valid int"
    )


def test_huge_numbers_and_names_give_short_messages() -> None:
    error = problem(
        f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - {{id: a, agent: s, run: x, retries: {'9' * 5000}}}\n"
    )
    assert str(error).startswith("wf.yaml:4: task 'a': retries is too large a number, got '9999")
    assert len(str(error)) < 200
    error = problem(f"name: w\n? {'k' * 100_000}\n: 1\ntasks: [{{id: a, agent: s}}]\n")  # `?`: keys over 1024
    assert len(str(error)) < 200 and "(100,000 characters)" in str(error)


# -- task ids name directories ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id, message",
    [
        (".", "must not be '.' or '..' (an id names the task's working directory), got '.'"),
        ("..", "must not be '.' or '..' (an id names the task's working directory), got '..'"),
        ("-rf", "must not start with '-' (it would read as an option after --task), got '-rf'"),
        ("a/b", "must use only letters, digits, '_', '.' and '-', got 'a/b'"),
        ("../x", "must use only letters, digits, '_', '.' and '-', got '../x'"),
        ("", "must use only letters, digits, '_', '.' and '-', got ''"),
    ],
)
def test_task_ids_unsafe_as_directory_names_are_refused_at_their_line(task_id: str, message: str) -> None:
    error = problem(f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - agent: s\n    run: x\n    id: '{task_id}'\n")
    label = f"task '{task_id}'" if task_id else "task #1"
    assert str(error) == f"wf.yaml:6: {label}: id {message}"


def test_a_task_id_longer_than_the_limit_is_refused() -> None:
    long_id = "a" * (MAX_TASK_ID_LENGTH + 1)
    error = problem(f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - {{id: {long_id}, agent: s, run: x}}\n")
    assert error.line == 4 and f"id must be at most {MAX_TASK_ID_LENGTH} characters" in error.message
    assert parse(f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks: [{{id: {long_id[:-1]}, agent: s, run: x}}]\n")


def test_the_python_api_refuses_dot_ids_too() -> None:
    with pytest.raises(ValueError, match=r"must not be '\.' or '\.\.'"):
        WorkflowSpec.model_validate(
            {"name": "w", "agents": {"s": {"kind": "shell"}}, "tasks": [{"id": "..", "agent": "s", "run": "x"}]}
        )


def test_line_breaks_in_names_are_escaped_so_each_problem_stays_one_line() -> None:
    error = problem('name: w\n"a\\rb\\u2028c": 1\ntasks: [{id: t, agent: "x\\ny"}]\n')
    assert str(error).splitlines() == [
        "wf.yaml:2: unknown top-level key 'a\\rb\\u2028c'",
        "wf.yaml:3: task 't': unknown agent 'x\\ny' (the workflow defines no agents)",
    ]


# -- floods of problems: the report stops at MAX_PROBLEMS, and so does the work --------------------------------------


def test_a_hundred_thousand_broken_tasks_give_the_first_problems_and_stop() -> None:
    text = "name: w\ntasks: [" + ", ".join(["1"] * 100_000) + "]\n"
    kind, error = finishes(lambda: parse_workflow(text, "wf.yaml"), within=60)
    assert kind == "error" and isinstance(error, SpecError)
    lines = str(error).splitlines()
    assert lines[0] == f"wf.yaml: more problems may follow: stopped after the first {MAX_PROBLEMS:,}"
    assert lines[1:3] == ["wf.yaml:2: task #1 must be a mapping, got 1", "wf.yaml:2: task #2 must be a mapping, got 1"]
    assert len(lines) == MAX_PROBLEMS + 1


def test_fifty_thousand_unknown_keys_are_counted_not_all_listed() -> None:
    text = "name: w\ntasks: [{id: a, agent: s}]\n" + "".join(f"key{i}: 1\n" for i in range(50_000))
    kind, error = finishes(lambda: parse_workflow(text, "wf.yaml"), within=60)
    assert kind == "error" and isinstance(error, SpecError)
    lines = str(error).splitlines()
    assert lines[0] == f"wf.yaml: {50_000 - MAX_PROBLEMS:,} more problems not listed: stopped after the first 1,000"
    assert lines[1] == "wf.yaml:3: unknown top-level key 'key0'"


def test_a_task_with_too_many_env_entries_is_one_problem() -> None:
    env = ", ".join(f"V{i}: x" for i in range(10_001))
    error = problem(f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - id: a\n    agent: s\n    env: {{{env}}}\n")
    assert str(error) == "wf.yaml:6: task 'a': env has 10,001 entries; at most 10,000 are allowed"


def test_a_value_full_of_unclosed_expressions_is_read_in_linear_time() -> None:
    # A regex looking for each `${{`'s `}}` rescanned the rest of the text every time: 20,000 of them took 30 s.
    text = "name: w\nagents: {s: {kind: shell}}\ntasks: [{id: a, agent: s, run: '" + "${{" * 500_000 + "'}]\n"
    kind, spec = finishes(lambda: parse_workflow(text, "wf.yaml"), within=30)
    assert kind == "value" and spec.tasks[0].run == "${{" * 500_000


def test_expressions_in_a_block_are_located_on_their_own_lines() -> None:
    block = "    run: |\n      a ${{ vars.X }}\n      b\n      c ${{ nope }}\n"
    error = problem("name: w\nagents: {s: {kind: shell}}\ntasks:\n  - id: a\n    agent: s\n" + block)
    assert [str(e) for e in error.errors] == [
        "wf.yaml:7: undefined variable 'X': pass --var X=VALUE",
        "wf.yaml:9: unsupported expression '${{ nope }}'; only ${{ vars.NAME }} is supported",
    ]
