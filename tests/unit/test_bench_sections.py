"""``agentdeck bench --help`` names every section the runner has (read without importing them)."""

from __future__ import annotations

from typer.testing import CliRunner

from bench.runner import SECTIONS
from bench.sections import section_names
from tui.cli import app


def test_the_names_are_the_runners_sections_in_order() -> None:
    assert section_names() == list(SECTIONS)


def test_bench_help_lists_every_section() -> None:
    shown = " ".join(CliRunner().invoke(app, ["bench", "--help"], terminal_width=400).output.split())
    for name in SECTIONS:
        assert name in shown, f"{name} is not in `agentdeck bench --help`"
