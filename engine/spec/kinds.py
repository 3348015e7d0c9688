"""The agent kinds a workflow may name: the four built in and any registered with
`engine.agents.register_agent_kind`.

`AgentSpec.kind` is checked against this list each time a spec is validated, so a kind registered before a
workflow is loaded validates like a built-in one, and an unknown kind gets the same ``file:line`` message as ever
(``agent 'a': kind must be 'shell', 'python', 'graph' or 'llm', got 'docker'``). The names live here, apart from
the factories in ``engine.agents``, because the spec must not import the agents (they import the spec).
"""

from __future__ import annotations

import re

BUILTIN_AGENT_KINDS = ("shell", "python", "graph", "llm")

# A kind is written in YAML and shown in messages: a plain word keeps both unambiguous.
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")

_kinds: list[str] = list(BUILTIN_AGENT_KINDS)


def agent_kinds() -> tuple[str, ...]:
    """Every kind a workflow may name now, built-in ones first, then in the order they were registered."""
    return tuple(_kinds)


def allow_agent_kind(kind: str) -> None:
    """Let workflows name ``kind``. Use `engine.agents.register_agent_kind`, which also says how to build one.

    Raises:
        ValueError: ``kind`` is not a plain name (a letter, then letters, digits, ``_``, ``.`` or ``-``).
    """
    if not isinstance(kind, str) or not _KIND_NAME.fullmatch(kind):
        raise ValueError(f"an agent kind is a letter followed by letters, digits, '_', '.' or '-', got {kind!r}")
    if kind not in _kinds:
        _kinds.append(kind)


def one_of(kinds: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``: how a message lists the choices (pydantic's wording for a Literal)."""
    quoted = [repr(kind) for kind in kinds]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
