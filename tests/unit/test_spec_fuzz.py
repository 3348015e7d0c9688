"""Fuzzing the loader: mutated workflow files only ever give a spec or a `SpecError` — no other exception, no hang.

The seeds are the real workflow files (examples/ and the integration tests' workflows). Byte mutations (flips,
inserted junk, deleted or repeated slices, truncation) go through `load_workflow` from a file, so reading and
decoding are fuzzed too; structural mutations (deleted keys, values swapped for other types, renamed keys) go
through `parse_workflow`. Every case runs under an alarm, so a hang fails instead of stalling the suite.

The default run tries ~100 cases in a few seconds; ``-m slow`` runs thousands.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.spec import SpecError, WorkflowSpec, load_workflow, parse_workflow

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("tests/integration/workflows/*.yaml")])
SEED_BYTES = [path.read_bytes() for path in SEEDS]
SEED_DATA = [yaml.safe_load(data) for data in SEED_BYTES]
# Every variable the seeds use, so that mutations reach past the variable check.
VARS = {"log": "/tmp/log", "marker": "/tmp/marker", "greeting": "hi", "TARGET": "api"}
PER_CASE_SECONDS = 10

QUICK = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG = settings(
    max_examples=3000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """A case ran past `PER_CASE_SECONDS`."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only_spec_or_spec_error(load: Callable[[], WorkflowSpec], path: str) -> None:
    """Load, then use the spec as the engine would; anything but a spec or a located `SpecError` fails."""
    with deadline(PER_CASE_SECONDS):
        try:
            spec = load()
            spec.validate_graph()
            order = spec.topological_order()
            assert sorted(order) == sorted(task.id for task in spec.tasks)
            spec.downstream(order[0])
        except SpecError as error:
            for line in str(error).splitlines():  # one `path:line: message` (or `path: message`) per problem
                assert line.startswith(f"{path}:"), line


# -- byte mutations ---------------------------------------------------------------------------------------------------


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        if operation == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif operation == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=16)
                | st.sampled_from(
                    [b"&a ", b"*a", b"<<: ", b"\t", b"- ", b"{", b"[", b"---\n", b"${{ vars.X }}", b"\xef\xbb\xbf"]
                )
            )
        elif operation == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif operation == "repeat":
            end = at + draw(st.integers(1, 200))
            data[at:at] = data[at:end] * draw(st.integers(1, 20))
        else:
            del data[at:]
    return bytes(data)


def check_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(data)
    only_spec_or_spec_error(lambda: load_workflow(path, VARS), str(path))


@QUICK
@given(data=mutated_bytes())
def test_byte_mutations_give_a_spec_or_a_spec_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    check_bytes(tmp_path_factory.mktemp("fuzz"), data)


@pytest.mark.slow
@LONG
@given(data=mutated_bytes())
def test_byte_mutations_long(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    check_bytes(tmp_path_factory.mktemp("fuzz"), data)


# -- structural mutations ---------------------------------------------------------------------------------------------

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "a", "shell", "python", "5m", "-1", ".", "..", "${{ vars.log }}", "${{ nope }}", "m:f"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a YAML tree: keys of mappings and indexes of lists."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    document = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(SEED_DATA))))  # a private copy
    for _ in range(draw(st.integers(1, 4))):
        places = paths(document)
        if not places:
            break
        where = draw(st.sampled_from(places))
        parent = document
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        operation = draw(st.sampled_from(["delete", "swap", "rename", "duplicate"]))
        if operation == "delete":
            del parent[last]
        elif operation == "swap":
            parent[last] = draw(values)
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(last)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@QUICK
@given(text=mutated_documents())
def test_structural_mutations_give_a_spec_or_a_spec_error(text: str) -> None:
    only_spec_or_spec_error(lambda: parse_workflow(text, "fuzzed.yaml", VARS), "fuzzed.yaml")


@pytest.mark.slow
@LONG
@given(text=mutated_documents())
def test_structural_mutations_long(text: str) -> None:
    only_spec_or_spec_error(lambda: parse_workflow(text, "fuzzed.yaml", VARS), "fuzzed.yaml")


def test_the_seeds_are_valid_workflows() -> None:
    assert len(SEEDS) >= 7
    for path in SEEDS:
        assert load_workflow(path, VARS).tasks
