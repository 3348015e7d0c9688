"""The names of ``agentdeck bench``'s sections, for its ``--help``, without importing them.

``bench.runner.SECTIONS`` is the one list; importing it imports every section (SurrealDB, LangGraph, Textual:
seconds), which the command line must not do just to build its help. So the names are read from that dict in
runner.py's source (its keys are string literals).
"""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).with_name("runner.py")


def section_names() -> list[str]:
    """The keys of ``bench.runner.SECTIONS``, in order (empty if the source cannot be read)."""
    try:
        tree = ast.parse(RUNNER.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)):
            continue
        if any(isinstance(target, ast.Name) and target.id == "SECTIONS" for target in node.targets):
            keys = node.value.keys
            return [key.value for key in keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    return []
