"""Workflow specs: every class of bad file gets its exact message at its line; good files load as written."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.spec import (
    MAX_RETRY_BACKOFF,
    AgentSpec,
    Defaults,
    SpecError,
    SpecErrors,
    TaskSpec,
    WorkflowSpec,
    load_workflow,
    parse_duration,
    parse_workflow,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parse(text: str, vars: dict[str, str] | None = None) -> WorkflowSpec:
    """Parse a dedented YAML snippet as ``wf.yaml``; line 1 is the snippet's first line."""
    return parse_workflow(textwrap.dedent(text).lstrip("\n"), "wf.yaml", vars)


def problem(text: str, vars: dict[str, str] | None = None) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse(text, vars)
    return caught.value


# -- one test per class of bad file ---------------------------------------------------------------------------------


def test_unknown_top_level_key_is_reported_at_its_line_with_a_suggestion() -> None:
    error = problem("""
        name: w
        tasks:
          - {id: a, agent: s, run: x}
        agents: {s: {kind: shell}}
        concurency: 4
    """)
    assert str(error) == "wf.yaml:5: unknown top-level key 'concurency' (did you mean 'concurrency'?)"
    assert (error.path, error.line) == ("wf.yaml", 5)
    assert error.message == "unknown top-level key 'concurency' (did you mean 'concurrency'?)"


def test_unknown_key_without_a_close_match_gets_no_suggestion() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks: [{id: a, agent: s, run: x}]
        colour: blue
    """)
    assert str(error) == "wf.yaml:4: unknown top-level key 'colour'"


def test_unknown_task_key_is_reported_at_its_own_line_with_a_suggestion() -> None:
    error = problem("""
        name: w
        agents:
          s: {kind: shell}
        tasks:
          - id: build
            agent: s
            run: make
            retires: 2
    """)
    assert str(error) == "wf.yaml:8: task 'build': unknown key 'retires' (did you mean 'retries'?)"


def test_unknown_keys_in_defaults_and_agents_name_their_mapping() -> None:
    error = problem("""
        name: w
        defaults: {timout: 10}
        agents:
          s: {kind: shell, concurency: 2}
        tasks: [{id: a, agent: s, run: x}]
    """)
    assert str(error) == (
        "wf.yaml:2: defaults: unknown key 'timout' (did you mean 'timeout'?)\n"
        "wf.yaml:4: agent 's': unknown key 'concurency' (did you mean 'concurrency'?)"
    )


def test_keys_the_loader_fills_itself_are_unknown_in_yaml() -> None:
    error = problem("""
        name: w
        source: elsewhere.yaml
        agents:
          s: {kind: shell, name: other}
        tasks:
          - {id: a, agent: s, run: x, line: 99}
    """)
    assert str(error) == (
        "wf.yaml:2: unknown top-level key 'source'\n"
        "wf.yaml:4: agent 's': unknown key 'name'\n"
        "wf.yaml:6: task 'a': unknown key 'line'"
    )


def test_unknown_agent_is_reported_at_the_tasks_agent_line() -> None:
    error = problem("""
        name: w
        agents:
          builder: {kind: shell}
        tasks:
          - id: build
            run: make
            agent: buidler
    """)
    assert str(error) == "wf.yaml:7: task 'build': unknown agent 'buidler' (did you mean 'builder'?)"


def test_unknown_agent_far_from_any_name_lists_the_defined_agents() -> None:
    error = problem("""
        name: w
        agents: {builder: {kind: shell}, helper: {kind: python, callable: "m:f"}}
        tasks:
          - {id: t, agent: zzz}
    """)
    assert str(error) == "wf.yaml:4: task 't': unknown agent 'zzz' (defined agents: builder, helper)"


def test_missing_dependency_is_reported_at_the_depends_on_line() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - id: prepare
            agent: s
            run: x
          - id: test
            agent: s
            run: y
            depends_on: [prepare, prep]
    """)
    assert str(error) == "wf.yaml:10: task 'test' depends on unknown task 'prep' (did you mean 'prepare'?)"


def test_missing_dependency_in_a_block_list_is_reported_at_its_item() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: a, agent: s, run: x}
          - id: b
            agent: s
            run: y
            depends_on:
              - a
              - nowhere
    """)
    assert str(error) == "wf.yaml:10: task 'b' depends on unknown task 'nowhere'"


def test_cycle_is_named_and_reported_at_its_first_task() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: start, agent: s, run: x}
          - id: a
            agent: s
            run: x
            depends_on: [c]
          - {id: b, agent: s, run: x, depends_on: [a, start]}
          - {id: c, agent: s, run: x, depends_on: [b]}
    """)
    # Arrows follow depends_on: a depends on c, c on b, b on a.
    assert str(error) == "wf.yaml:5: cycle: a -> c -> b -> a"


def test_self_dependency_has_its_own_message() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - id: a
            agent: s
            run: x
            depends_on: a
    """)
    assert str(error) == "wf.yaml:7: task 'a' depends on itself"


def test_bad_duration_is_reported_at_the_value_line() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - id: a
            agent: s
            run: x
            timeout: 5 minutes
    """)
    assert str(error) == (
        "wf.yaml:7: task 'a': timeout must be seconds or a duration like 90s, 5m, 1h30m, 500ms, got '5 minutes'"
    )


def test_zero_timeout_is_refused() -> None:
    error = problem("""
        name: w
        defaults:
          timeout: 0s
        agents: {s: {kind: shell}}
        tasks: [{id: a, agent: s, run: x}]
    """)
    assert str(error) == "wf.yaml:3: defaults: timeout must be a duration above zero, got '0s'"


def test_negative_retries_are_reported_at_the_value_line() -> None:
    error = problem("""
        name: w
        defaults:
          retries: -1
        agents: {s: {kind: shell}}
        tasks: [{id: a, agent: s, run: x}]
    """)
    assert str(error) == "wf.yaml:3: defaults: retries must be >= 0, got -1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("concurrency: many", "concurrency must be an integer, got 'many'"),
        ("concurrency: 0", "concurrency must be >= 1, got 0"),
        ("concurrency: true", "concurrency must be an integer, got true"),
        ("failure_policy: stop", "failure_policy must be 'fail_fast' or 'continue', got 'stop'"),
        ("description: [a]", "description must be a string, got a list"),
    ],
)
def test_top_level_type_errors_are_reported_at_the_value_line(line: str, message: str) -> None:
    error = problem(f"name: w\n{line}\nagents: {{s: {{kind: shell}}}}\ntasks: [{{id: a, agent: s, run: x}}]\n")
    assert str(error) == f"wf.yaml:2: {message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("retries: 1.5", "retries must be an integer, got 1.5"),
        ("sandbox: docker", "sandbox must be 'local', 'e2b' or 'worker', got 'docker'"),
        ("network: maybe", "network must be true or false, got 'maybe'"),
        ("input: [1, 2]", "input must be a mapping, got a list"),
        ("id: 'a b'", "id must use only letters, digits, '_', '.' and '-', got 'a b'"),
        ("secrets: [API-KEY]", "secrets[0] must be an environment variable name (letters, digits, '_'), got 'API-KEY'"),
        ("run: ''", "run must not be empty"),
    ],
)
def test_task_field_errors_name_the_task_and_the_field(line: str, message: str) -> None:
    error = problem(f"name: w\nagents: {{s: {{kind: shell}}}}\ntasks:\n  - agent: s\n    {line}\n")
    if not line.startswith("id:"):
        assert "missing required key 'id'" in str(error)
        error = next(e for e in error.errors if e.line == 5)
        assert str(error) == f"wf.yaml:5: task #1: {message}"
    else:
        assert str(error).startswith(f"wf.yaml:5: task 'a b': {message}")


def test_missing_run_for_a_shell_task_is_reported_at_the_task() -> None:
    error = problem("""
        name: w
        agents:
          builder: {kind: shell}
        tasks:
          - id: build
            agent: builder
    """)
    assert str(error) == "wf.yaml:5: task 'build': run is required because agent 'builder' is a shell agent"


def test_run_on_a_python_task_is_reported_at_the_run_line() -> None:
    error = problem("""
        name: w
        agents:
          helper: {kind: python, callable: "mypkg.steps:prepare"}
        tasks:
          - id: prepare
            agent: helper
            run: python prepare.py
    """)
    assert str(error) == "wf.yaml:7: task 'prepare': run is only for shell agents; agent 'helper' is a python agent"


def test_duplicate_task_id_is_reported_at_the_second_one() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - id: build
            agent: s
            run: x
          - id: build
            agent: s
            run: y
    """)
    assert str(error) == "wf.yaml:7: duplicate task id 'build' (first defined at line 4)"


@pytest.mark.parametrize(
    ("agent", "line", "message"),
    [
        ("{kind: python}", 3, """agent 'a': callable is required for python agents ("module:attr")"""),
        ("{kind: graph}", 3, """agent 'a': graph is required for graph agents ("module:attr")"""),
        ("{kind: python, callable: prepare}", 3, """agent 'a': callable must look like "module:attr", got 'prepare'"""),
        (
            "{kind: shell, model: 'openai:gpt'}",
            3,
            "agent 'a': model is only for llm agents; this agent is kind 'shell'",
        ),
        ("{kind: docker}", 3, "agent 'a': kind must be 'shell', 'python', 'graph' or 'llm', got 'docker'"),
        ("{kind: shell, concurrency: 0}", 3, "agent 'a': concurrency must be >= 1, got 0"),
        ("shell", 3, "agent 'a' must be a mapping, got 'shell'"),
    ],
)
def test_agent_errors(agent: str, line: int, message: str) -> None:
    error = problem(f"name: w\nagents:\n  a: {agent}\ntasks: [{{id: t, agent: a}}]\n")
    assert str(error) == f"wf.yaml:{line}: {message}"


def test_yaml_syntax_error_is_reported_at_the_parsers_line() -> None:
    error = problem("""
        name: w
        tasks:
          - id: a
           agent: s
    """)
    assert str(error) == "wf.yaml:4: invalid YAML: did not find expected '-' indicator"


def test_duplicate_yaml_key_is_reported_at_the_repeat() -> None:
    error = problem("""
        name: w
        tasks: [{id: a, agent: s}]
        name: v
    """)
    assert str(error) == "wf.yaml:3: duplicate key 'name'"


def test_undefined_variable_is_reported_at_its_line_only_once() -> None:
    error = problem(
        """
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - id: a
            agent: s
            retries: ${{ vars.RETRIES }}
            run: |
              echo start
              deploy ${{ vars.TARGET }}
    """,
        vars={"OTHER": "1"},
    )
    # The unfilled `retries` would also fail as "not an integer"; only the cause is reported.
    assert str(error) == (
        "wf.yaml:6: undefined variable 'RETRIES': pass --var RETRIES=VALUE\n"
        "wf.yaml:9: undefined variable 'TARGET': pass --var TARGET=VALUE"
    )


def test_expressions_other_than_vars_are_refused() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks: [{id: a, agent: s, run: "echo ${{ env.HOME }}"}]
    """)
    assert str(error) == "wf.yaml:3: unsupported expression '${{ env.HOME }}'; only ${{ vars.NAME }} is supported"


def test_missing_required_keys_and_empty_tasks() -> None:
    assert str(problem("description: nothing\ntasks: []\n")) == (
        "wf.yaml:1: missing required top-level key 'name'\nwf.yaml:2: tasks must list at least one task"
    )
    assert str(problem("name: w\n")) == "wf.yaml:1: missing required top-level key 'tasks'"
    assert str(problem("name: w\ntasks:\n  - {agent: s}\nagents: {s: {kind: llm}}\n")) == (
        "wf.yaml:3: task #1: missing required key 'id'"
    )


def test_empty_and_non_mapping_files() -> None:
    assert str(problem("")) == "wf.yaml:1: the file is empty; a workflow needs at least 'name' and 'tasks'"
    assert (
        str(problem("- a\n- b\n")) == "wf.yaml:1: the top level must be a mapping with 'name' and 'tasks', got a list"
    )


def test_several_errors_are_reported_together_sorted_by_line() -> None:
    error = problem("""
        name: w
        concurrency: many
        agents:
          builder: {kind: shell}
        tasks:
          - id: c
            agent: builder
            run: x
            depends_on: [a]
          - id: a
            agent: buidler
            run: y
            retires: 1
          - id: b
            agent: builder
            run: z
            depends_on: [c, missing]
        defaults: {retries: -1}
    """)
    assert isinstance(error, SpecErrors)
    expected = [
        "wf.yaml:2: concurrency must be an integer, got 'many'",
        # task 'a' has an unknown key, but its id, agent and dependencies are sound: they are judged too.
        "wf.yaml:11: task 'a': unknown agent 'buidler' (did you mean 'builder'?)",
        "wf.yaml:13: task 'a': unknown key 'retires' (did you mean 'retries'?)",
        "wf.yaml:17: task 'b' depends on unknown task 'missing'",
        "wf.yaml:18: defaults: retries must be >= 0, got -1",
    ]
    assert str(error) == "\n".join(expected)
    assert [str(e) for e in error.errors] == expected
    assert [e.line for e in error.errors] == [2, 11, 13, 17, 18]
    assert (error.path, error.line) == ("wf.yaml", 2)


def test_graph_problems_are_all_reported_when_fields_are_valid() -> None:
    error = problem("""
        name: w
        agents: {s: {kind: shell}, p: {kind: python, callable: "m:f"}}
        tasks:
          - {id: a, agent: s, depends_on: [b]}
          - {id: b, agent: p, run: x, depends_on: [a]}
          - {id: a, agent: q, run: x}
    """)
    assert str(error) == "\n".join(
        [
            "wf.yaml:4: task 'a': run is required because agent 's' is a shell agent",
            "wf.yaml:4: cycle: a -> b -> a",
            "wf.yaml:5: task 'b': run is only for shell agents; agent 'p' is a python agent",
            "wf.yaml:6: duplicate task id 'a' (first defined at line 4)",
            "wf.yaml:6: task 'a': unknown agent 'q' (defined agents: p, s)",
        ]
    )


def test_a_cycle_through_a_task_with_an_unknown_key_is_reported_with_the_key() -> None:
    # Issue 12 point 9: an unknown key used to take its task out of the graph checks, hiding the cycle until
    # the key was fixed; every problem comes at once.
    error = problem("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: a, agent: s, run: x, depends_on: [b], bogus: 1}
          - {id: b, agent: s, run: x, depends_on: [a]}
          - {id: c, agent: s, run: x, depends_on: [nope]}
    """)
    assert str(error) == "\n".join(
        [
            "wf.yaml:4: task 'a': unknown key 'bogus'",
            "wf.yaml:4: cycle: a -> b -> a",
            "wf.yaml:6: task 'c' depends on unknown task 'nope'",
        ]
    )


def test_file_not_found_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_workflow(missing)
    assert str(caught.value) == f"{missing}: no such file"
    assert (caught.value.path, caught.value.line) == (str(missing), None)


def test_a_directory_or_binary_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        load_workflow(tmp_path)
    binary = tmp_path / "wf.yaml"
    binary.write_bytes(b"name: w\n\xff\xfe\n")
    with pytest.raises(SpecError) as caught:
        load_workflow(binary)
    assert str(caught.value) == f"{binary}:2: the file is not UTF-8 text"


# -- good files -----------------------------------------------------------------------------------------------------

GOOD = """
name: build-and-verify
description: optional text
concurrency: 8
failure_policy: continue
defaults: {timeout: 5m, retries: 1, sandbox: local, retry_backoff: 500ms}
agents:
  builder: {kind: shell, concurrency: 4}
  planner: {kind: graph, graph: "mypkg.graphs:planner"}
  helper:  {kind: python, callable: "mypkg.steps:prepare"}
  writer:  {kind: llm, model: "openai:gpt-4o-mini", options: {temperature: 0}}
tasks:
  - id: prepare
    agent: helper
    input: {target: "${{ vars.TARGET }}", count: 3}
  - id: plan
    agent: planner
    depends_on: prepare
  - id: test
    agent: builder
    run: "cd $HOME/${{ vars.TARGET }} && python -m pytest -q ${PYTEST_ARGS}"
    depends_on: [prepare]
    timeout: 120
    retries: 2
    sandbox: e2b
    env: {PORT: 8080, DEBUG: true}
    secrets: [API_TOKEN]
    network: true
  - id: write
    agent: writer
    depends_on: [plan, test]
"""


@pytest.fixture
def good() -> WorkflowSpec:
    return parse(GOOD, vars={"TARGET": "api"})


def test_good_file_loads_as_written(good: WorkflowSpec) -> None:
    assert (good.name, good.description, good.concurrency, good.failure_policy) == (
        "build-and-verify",
        "optional text",
        8,
        "continue",
    )
    assert good.source == "wf.yaml"
    assert good.agents["builder"] == AgentSpec(name="builder", kind="shell", concurrency=4)
    assert good.agents["writer"].options == {"temperature": 0}
    assert good.agents[good.task("plan").agent].graph == "mypkg.graphs:planner"
    test = good.task("test")
    assert test.env == {"PORT": "8080", "DEBUG": "true"}
    assert (test.secrets, test.network, test.sandbox) == (["API_TOKEN"], True, "e2b")
    assert good.task("plan").depends_on == ["prepare"]
    assert [task.line for task in good.tasks] == [12, 15, 18, 28]
    assert test.line_of("run") == 20 and test.line_of("depends_on[0]") == 21


def test_durations_and_defaults_apply(good: WorkflowSpec) -> None:
    defaults = good.defaults
    assert (defaults.timeout, defaults.retry_backoff) == (300.0, 0.5)
    test, write = good.task("test"), good.task("write")
    assert (test.effective_timeout(defaults), test.effective_retries(defaults), test.max_attempts(defaults)) == (
        120.0,
        2,
        3,
    )
    assert (write.timeout, write.retries, write.sandbox) == (None, None, None)
    assert (write.effective_timeout(defaults), write.effective_retries(defaults), write.max_attempts(defaults)) == (
        300.0,
        1,
        2,
    )
    assert write.effective_sandbox(defaults, fallback="e2b") == "local"  # the file's defaults name a sandbox
    assert test.effective_sandbox(defaults, fallback="local") == "e2b"


def test_agentdeck_sandbox_decides_where_the_workflow_names_no_sandbox() -> None:
    unset = parse("name: w\nagents: {s: {kind: shell}}\ntasks: [{id: a, agent: s, run: x}]\n")
    assert unset.tasks[0].effective_sandbox(unset.defaults, fallback="e2b") == "e2b"
    assert unset.tasks[0].effective_sandbox(unset.defaults, fallback="local") == "local"


def test_omitted_sections_get_their_defaults() -> None:
    spec = parse("name: w\nagents: {s: {kind: shell}}\ntasks: [{id: a, agent: s, run: x}]\n")
    assert spec.defaults == Defaults(timeout=300.0, retries=0, sandbox="local", retry_backoff=1.0)
    assert (spec.concurrency, spec.failure_policy, spec.description) == (8, "fail_fast", "")
    task = spec.tasks[0]
    assert (task.input, task.depends_on, task.env, task.secrets, task.network) == ({}, [], {}, [], False)
    assert task.max_attempts(spec.defaults) == 1


def test_retry_backoff_doubles_and_is_capped() -> None:
    defaults = Defaults.model_validate({"retry_backoff": "2s"})  # Python callers may write durations too
    assert [defaults.backoff_before(attempt) for attempt in (1, 2, 3, 4, 5)] == [0.0, 2.0, 4.0, 8.0, 16.0]
    assert defaults.backoff_before(10) == MAX_RETRY_BACKOFF == 30.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m30s500ms", 150.5),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "", "5x", "m", "-5s", "1h-30m", "5 s", -1, float("inf")])
def test_parse_duration_refuses_what_it_cannot_read(value: str | float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_parse_duration_refuses_non_numbers() -> None:
    with pytest.raises(TypeError):
        parse_duration(True)


def test_vars_are_substituted_and_shell_syntax_passes_through(good: WorkflowSpec) -> None:
    assert good.task("prepare").input == {"target": "api", "count": 3}
    assert good.task("test").run == "cd $HOME/api && python -m pytest -q ${PYTEST_ARGS}"


def test_a_whole_value_variable_is_read_as_the_fields_type() -> None:
    spec = parse(
        """
        name: ${{ vars.NAME }}
        concurrency: ${{vars.N}}
        agents: {s: {kind: shell}}
        tasks:
          - id: a
            agent: s
            timeout: ${{ vars.T }}
            run: |
              echo "$HOME" ${{ vars.NAME }}
    """,
        vars={"NAME": "nightly", "N": "2", "T": "90s"},
    )
    assert (spec.name, spec.concurrency, spec.tasks[0].timeout) == ("nightly", 2, 90.0)
    assert spec.tasks[0].run == 'echo "$HOME" nightly\n'


def test_yaml_1_2_keeps_words_and_leading_zeros() -> None:
    spec = parse("""
        name: w
        agents: {p: {kind: python, callable: "m:f"}}
        tasks:
          - {id: a, agent: p, input: {answer: no, on: yes, code: 010}}
    """)
    assert spec.tasks[0].input == {"answer": "no", "on": "yes", "code": 10}


def test_anchors_and_merge_keys_work() -> None:
    spec = parse("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - &base {id: a, agent: s, run: x, retries: 3}
          - {<<: *base, id: b, depends_on: [a]}
    """)
    assert spec.task("b").retries == 3 and spec.task("b").run == "x"


def test_topological_order_puts_dependencies_first_and_keeps_file_order_for_ties() -> None:
    spec = parse("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: report, agent: s, run: x, depends_on: [stats, slow]}
          - {id: stats, agent: s, run: x, depends_on: [fetch]}
          - {id: slow, agent: s, run: x}
          - {id: fetch, agent: s, run: x}
          - {id: lint, agent: s, run: x}
    """)
    assert spec.topological_order() == ["slow", "fetch", "stats", "report", "lint"]


def test_downstream_is_transitive_and_upstream_is_direct(good: WorkflowSpec) -> None:
    assert good.downstream("prepare") == {"plan", "test", "write"}
    assert good.downstream("plan") == {"write"}
    assert good.downstream("write") == set()
    assert good.upstream("write") == ["plan", "test"]
    assert good.upstream("prepare") == []
    with pytest.raises(KeyError):
        good.task("nope")


def test_examples_load() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        spec = load_workflow(path)
        assert spec.source == str(path)
        assert len(spec.topological_order()) == len(spec.tasks)


def test_load_workflow_reads_a_file_and_vars(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(GOOD), encoding="utf-8")
    spec = load_workflow(path, {"TARGET": "web"})
    assert spec.task("prepare").input["target"] == "web"
    assert spec.source == str(path)
    path.write_text("name: w\nagents: {s: {kind: shell}}\ntasks: [{id: a, agent: s}]\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    assert str(caught.value) == f"{path}:3: task 'a': run is required because agent 's' is a shell agent"


def test_a_dumped_spec_validates_back_to_an_equal_spec(good: WorkflowSpec) -> None:
    again = WorkflowSpec.model_validate(good.model_dump(mode="json"))
    assert again == good
    again.validate_graph()


# -- the Python API -------------------------------------------------------------------------------------------------


def build(tasks: list[dict[str, Any]], **agents: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "w", "agents": agents, "tasks": tasks})


def test_python_api_builds_the_same_spec_as_yaml() -> None:
    spec = WorkflowSpec(
        name="w",
        agents={"s": AgentSpec(name="s", kind="shell")},
        tasks=[
            TaskSpec(id="a", agent="s", run="x", timeout=120),
            TaskSpec(id="b", agent="s", run="y", depends_on=["a"]),
        ],
    )
    spec.validate_graph()
    from_yaml = parse("""
        name: w
        agents: {s: {kind: shell}}
        tasks:
          - {id: a, agent: s, run: x, timeout: 2m}
          - {id: b, agent: s, run: y, depends_on: [a]}
    """)
    assert spec.tasks == from_yaml.tasks
    assert spec.agents == from_yaml.agents
    assert spec.topological_order() == ["a", "b"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([{"id": "a", "agent": "buidler", "run": "x"}], "task 'a': unknown agent 'buidler' (did you mean 'builder'?)"),
        (
            [{"id": "a", "agent": "builder", "run": "x", "depends_on": ["b"]}],
            "task 'a' depends on unknown task 'b'",
        ),
        (
            [
                {"id": "a", "agent": "builder", "run": "x", "depends_on": ["b"]},
                {"id": "b", "agent": "builder", "run": "x", "depends_on": ["a"]},
            ],
            "cycle: a -> b -> a",
        ),
        ([{"id": "a", "agent": "builder", "run": "x", "depends_on": ["a"]}], "task 'a' depends on itself"),
        ([{"id": "a", "agent": "builder"}], "task 'a': run is required because agent 'builder' is a shell agent"),
        (
            [{"id": "a", "agent": "helper", "run": "x"}],
            "task 'a': run is only for shell agents; agent 'helper' is a python agent",
        ),
        ([{"id": "a", "agent": "builder", "run": "x"}] * 2, "duplicate task id 'a'"),
    ],
)
def test_python_api_raises_the_same_errors_as_yaml(tasks: list[dict[str, Any]], message: str) -> None:
    agents = {"builder": {"kind": "shell"}, "helper": {"kind": "python", "callable": "m:f"}}
    spec = build(tasks, **agents)
    with pytest.raises(SpecError) as caught:
        spec.validate_graph()
    assert str(caught.value) == message
    assert (caught.value.path, caught.value.line) == (None, None)

    yaml_tasks = "\n".join(f"  - {task_yaml(task)}" for task in tasks)
    yaml_error = problem(
        "name: w\nagents: {builder: {kind: shell}, helper: {kind: python, callable: 'm:f'}}\n"
        f"tasks:\n{yaml_tasks}\n"
    )
    assert yaml_error.message.startswith(message)


def task_yaml(task: dict[str, Any]) -> str:
    parts = [
        f"{key}: [{', '.join(value)}]" if isinstance(value, list) else f"{key}: {value}" for key, value in task.items()
    ]
    return "{" + ", ".join(parts) + "}"


def test_python_api_checks_agent_names_match_their_keys() -> None:
    spec = WorkflowSpec(
        name="w",
        agents={"builder": AgentSpec(name="other", kind="shell")},
        tasks=[TaskSpec(id="a", agent="builder", run="x")],
    )
    with pytest.raises(SpecError, match="agent 'builder' is named 'other'; the key and the name must match"):
        spec.validate_graph()


def test_python_api_topological_order_refuses_a_cycle() -> None:
    spec = build(
        [
            {"id": "a", "agent": "s", "run": "x", "depends_on": ["b"]},
            {"id": "b", "agent": "s", "run": "x", "depends_on": ["a"]},
        ],
        s={"kind": "shell"},
    )
    with pytest.raises(SpecError, match=r"^cycle: a -> b -> a$"):
        spec.topological_order()


def test_spec_error_formats_missing_parts_gracefully() -> None:
    assert str(SpecError("bad", path="f.yaml", line=3)) == "f.yaml:3: bad"
    assert str(SpecError("bad", path="f.yaml")) == "f.yaml: bad"
    assert str(SpecError("bad", line=3)) == "line 3: bad"
    assert str(SpecError("bad")) == "bad"
    several = SpecErrors([SpecError("second", path="f", line=9), SpecError("first", path="f", line=2)])
    assert str(several) == "f:2: first\nf:9: second"
    assert [e.message for e in several.errors] == ["first", "second"]
