"""The demo's Python agents: they plan a package and write its code and tests from templates, offline.

They are ordinary synchronous functions; the engine runs them in a worker thread and they mark step
boundaries with ``ctx.step_sync()`` so pause and cancel take effect between steps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

CODE = {
    "word_count": '''
def word_count(text: str) -> int:
    """How many words ``text`` has."""
    return len(text.split())
''',
    "top_words": '''
def top_words(text: str, n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` most frequent words, most frequent first."""
    return Counter(word.strip(".,!?").lower() for word in text.split()).most_common(n)
''',
    "reading_time": '''
def reading_time(text: str, words_per_minute: int = 230) -> float:
    """Minutes a person needs to read ``text``."""
    return round(word_count(text) / words_per_minute, 2)
''',
    "sentence_count": '''
def sentence_count(text: str) -> int:
    """Sentences, counted by their final punctuation."""
    return max(1, sum(text.count(mark) for mark in ".!?")) if text.strip() else 0
''',
}

TESTS = {
    "word_count": """
    def test_word_count(self):
        self.assertEqual(textstats.word_count("one two  three"), 3)
""",
    "top_words": """
    def test_top_words(self):
        self.assertEqual(textstats.top_words("a b a c a b", 2), [("a", 3), ("b", 2)])
""",
    "reading_time": """
    def test_reading_time(self):
        self.assertEqual(textstats.reading_time("word " * 460), 2.0)
""",
    "sentence_count": """
    def test_sentence_count(self):
        self.assertEqual(textstats.sentence_count("Hi. How are you? Fine!"), 3)
""",
}


def _steps(ctx: Any, items: list[str], what: str, pause_s: float = 0.6) -> None:
    for index, item in enumerate(items, 1):
        ctx.step_sync()
        ctx.log(f"{what} {item}")
        ctx.progress(index / len(items), f"{what} {item}")
        time.sleep(pause_s)


def plan(ctx: Any) -> dict[str, Any]:
    """Decide the package's name and functions (from the task input)."""
    package = str(ctx.input.get("package", "textstats"))
    functions = [f for f in ctx.input.get("functions", list(CODE)) if f in CODE]
    _steps(ctx, functions, "planning")
    ctx.log(f"plan: package {package} with {len(functions)} functions")
    ctx.remember_sync(
        f"Plan for the {package} package: {', '.join(functions)}, each a pure function of a text, tested with "
        "unittest and linted with ruff."
    )
    return {"package": package, "functions": functions}


def write_code(ctx: Any) -> dict[str, Any]:
    """Write the package's module from templates (with one unused import the linter will catch)."""
    plan_out = ctx.upstream["plan"]
    package, functions = plan_out["package"], plan_out["functions"]
    root = Path(ctx.workdir) / "src" / package
    root.mkdir(parents=True, exist_ok=True)
    _steps(ctx, functions, "writing")
    body = "".join(CODE[name] for name in functions)
    source = '"""Small text statistics."""\n\nimport os\nfrom collections import Counter\n' + body
    (root / "stats.py").write_text(source)
    exports = ", ".join(functions)
    (root / "__init__.py").write_text(
        f'"""{package}: small text statistics."""\n\nfrom {package}.stats import {exports}\n\n__all__ = {functions!r}\n'
    )
    ctx.log(f"wrote {root / 'stats.py'} ({len(source.splitlines())} lines) and the package's __init__.py")
    return {"dir": str(ctx.workdir), "functions": functions}


def write_tests(ctx: Any) -> dict[str, Any]:
    """Write one unittest per function (pytest runs them too)."""
    plan_out = ctx.upstream["plan"]
    package, functions = plan_out["package"], plan_out["functions"]
    tests = Path(ctx.workdir) / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    _steps(ctx, functions, "testing")
    body = "".join(TESTS[name] for name in functions)
    header = f"import unittest\n\nimport {package} as textstats\n\n\nclass TestTextStats(unittest.TestCase):"
    (tests / f"test_{package}.py").write_text(header + body)
    ctx.log(f"wrote {len(functions)} tests")
    ctx.remember_sync(
        f"Tests for {package} import the package as textstats and check each function on a short literal text.",
        "short_term",
    )
    return {"dir": str(ctx.workdir), "tests": len(functions)}


def report(ctx: Any) -> dict[str, Any]:
    """Summarise what the other agents did."""
    _steps(ctx, ["lint", "unit_tests", "measure"], "reading results of", 0.3)
    summary = {name: ("ok" if out is not None else "missing") for name, out in ctx.upstream.items()}
    for name, verdict in summary.items():
        ctx.log(f"{name}: {verdict}")
    verdicts = ", ".join(f"{name} {verdict}" for name, verdict in summary.items())
    ctx.remember_sync(f"Release report for the textstats package: {verdicts}.", "checkpoint")
    return summary
