"""The watchpoint expression language: what ``watch:`` in a workflow file and ``--when`` on the command line say.

A watchpoint pauses its workflow when its condition holds (``engine.watch`` evaluates it over the event stream).
Conditions, combinable with ``and``, ``or`` and parentheses::

    cost_usd > 0.50                  dollars spent on model calls (llm.usage events)
    tokens > 200k                    tokens used by model calls (k and M suffixes)
    running > 5m                     a task running longer than a duration (paused time does not count)
    tool_repeats >= 3                the same tool call (name and arguments) made 3 times by one agent in one task
    node check runs >= 2             a graph node executed 2 times in one task (quote odd names: node "a b" runs > 1)
    output ~ "Traceback|password"    a line of task output matching a regular expression
    failures >= 3 within 10m         task failures (or ``retries``) in a sliding window; without ``within``: ever

Limits are crossed upwards: only ``>`` and ``>=`` compare. The regex is the text between the quotes as written
(``\\"`` stands for a quote), in the syntax of the ``regex`` package (a superset of ``re``'s); it is compiled here,
so a bad one is an error with its column like any other. ``regex`` because it searches with a timeout: a pattern
that backtracks for ever on some line cannot block the engine (``engine.watch.conditions``).

Parsed by lark (LALR, built once). Errors are ``WatchSyntaxError`` with the column (and line, for an expression
written over several lines) of the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Literal

import regex

from engine.spec.durations import parse_duration

if TYPE_CHECKING:
    from lark import Lark, Token
    from lark.exceptions import UnexpectedToken

__all__ = [
    "MEASURES",
    "AllOf",
    "AnyOf",
    "Budget",
    "Condition",
    "Failures",
    "NodeRuns",
    "OutputMatch",
    "Running",
    "ToolRepeats",
    "WatchExpr",
    "WatchSyntaxError",
    "parse_watch",
]

#: The measures a comparison may name, with what their limit is.
MEASURES = {
    "cost_usd": "a number of dollars, like 0.50",
    "tokens": "a count of tokens, like 200k or 1.5M",
    "running": "a duration, like 90s, 5m or 1h30m",
    "tool_repeats": "a whole number of calls, like 3",
    "failures": "a whole number of failures, like 3",
    "retries": "a whole number of retries, like 2",
}
MAX_EXPRESSION_CHARS = 2_000

_GRAMMAR = r"""
?start: disj
?disj: conj (_OR conj)*
?conj: atom (_AND atom)*
?atom: "(" disj ")"
     | compare
     | noderuns
     | match
compare: NAME CMP QUANTITY window?
window: _WITHIN QUANTITY
noderuns: _NODE (NAME | STRING) _RUNS CMP QUANTITY
match: _OUTPUT TILDE STRING

_OR.2: /or\b/
_AND.2: /and\b/
_WITHIN.2: /within\b/
_NODE.2: /node\b/
_RUNS.2: /runs\b/
_OUTPUT.2: /output\b/
TILDE: "~"
NAME: /[A-Za-z_][A-Za-z0-9_.-]*/
CMP: /[<>=!]=?/
QUANTITY: /\$?(\d+(\.\d*)?|\.\d+)[A-Za-z0-9.]*/
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
%ignore /\s+/
"""

# What a terminal is, in an error message ("expected a number").
_WORDS = {
    "NAME": "a measure (cost_usd, tokens, running, tool_repeats, failures, retries)",
    "CMP": "'>' or '>='",
    "QUANTITY": "a number",
    "STRING": 'a quoted "text"',
    "TILDE": "'~'",
    "LPAR": "'('",
    "RPAR": "')'",
    "_OR": "'or'",
    "_AND": "'and'",
    "_WITHIN": "'within'",
    "_NODE": "'node'",
    "_RUNS": "'runs'",
    "_OUTPUT": "'output'",
    "$END": "the end",
}
_CONDITION_START = {"NAME", "_NODE", "_OUTPUT", "LPAR"}


class WatchSyntaxError(ValueError):
    """A watch expression that does not parse or means nothing: ``column`` (1-based) points at the problem."""

    def __init__(self, message: str, *, column: int, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.line = line

    def __str__(self) -> str:
        where = f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        return f"{where}: {self.message}"


Op = Literal[">", ">="]


@dataclass(frozen=True)
class _Compared:
    op: Op
    limit: float

    def passes(self, value: float) -> bool:
        return value > self.limit if self.op == ">" else value >= self.limit


@dataclass(frozen=True)
class Budget(_Compared):
    """``cost_usd > 0.50`` / ``tokens > 200k``: summed from ``llm.usage`` events."""

    measure: Literal["cost_usd", "tokens"]
    text: str


@dataclass(frozen=True)
class Running(_Compared):
    """``running > 5m``: a task running longer than ``limit`` seconds."""

    text: str


@dataclass(frozen=True)
class ToolRepeats(_Compared):
    """``tool_repeats >= 3``: one tool call (name and arguments) made ``limit`` times in one task."""

    text: str


@dataclass(frozen=True)
class NodeRuns(_Compared):
    """``node check runs >= 2``: a graph node executed ``limit`` times in one task."""

    node: str
    text: str


@dataclass(frozen=True)
class Failures(_Compared):
    """``failures >= 3 within 10m``: task failures (or retries) within a sliding window (None: ever)."""

    kind: Literal["failures", "retries"]
    window_s: float | None
    text: str


@dataclass(frozen=True)
class OutputMatch:
    """``output ~ "Traceback|password"``: a task output line the regex finds a match in."""

    pattern: regex.Pattern[str]
    text: str


Condition = Budget | Running | ToolRepeats | NodeRuns | Failures | OutputMatch


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


Node = Condition | AllOf | AnyOf


@dataclass(frozen=True)
class WatchExpr:
    """A parsed expression: its text and its tree."""

    text: str
    root: Node
    conditions: tuple[Condition, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(_conditions(self.root)))


def _conditions(node: Node) -> Iterator[Condition]:
    if isinstance(node, AllOf | AnyOf):
        for part in node.parts:
            yield from _conditions(part)
    else:
        yield node


@cache
def _parser() -> Lark:
    from lark import Lark

    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse_watch(text: str) -> WatchExpr:
    """Parse a watch expression.

    Raises:
        WatchSyntaxError: what is wrong, and its column.
    """
    from lark import Tree
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    if not isinstance(text, str) or not text.strip():
        raise WatchSyntaxError("the expression is empty; write a condition such as cost_usd > 0.50", column=1)
    if len(text) > MAX_EXPRESSION_CHARS:
        raise WatchSyntaxError(
            f"the expression is {len(text):,} characters; at most {MAX_EXPRESSION_CHARS:,}", column=1
        )
    try:
        tree = _parser().parse(text)
    except UnexpectedToken as exc:
        raise _unexpected_token(exc, text) from None
    except UnexpectedCharacters as exc:
        if exc.char in "\"'":
            message = f"the text starting with {exc.char} has no closing {exc.char}"
        else:
            message = f"unexpected character {exc.char!r}"
        raise WatchSyntaxError(message, column=exc.column, line=exc.line) from None
    except UnexpectedInput as exc:  # pragma: no cover - the LALR parser raises one of the two above
        raise WatchSyntaxError("cannot read the expression", column=exc.column, line=exc.line) from None
    if not isinstance(tree, Tree):  # pragma: no cover - the grammar always yields a tree
        raise WatchSyntaxError("cannot read the expression", column=1)
    return WatchExpr(text.strip(), _build(tree, text))


def _unexpected_token(exc: UnexpectedToken, text: str) -> WatchSyntaxError:
    token = exc.token
    expected = set(exc.expected)
    if expected & _CONDITION_START == expected or {"NAME", "_NODE", "_OUTPUT"} <= expected:
        wanted = "a condition (cost_usd, tokens, running, tool_repeats, failures, retries, node NAME runs, output ~)"
    else:
        words = sorted(_WORDS.get(name, name.lower()) for name in expected)
        wanted = words[0] if len(words) == 1 else f"one of {', '.join(words)}"
    if token.type == "$END":
        lines = text.rstrip().split("\n")
        return WatchSyntaxError(
            f"the expression ends too early: expected {wanted}", column=len(lines[-1]) + 1, line=len(lines)
        )
    return WatchSyntaxError(f"expected {wanted}, got {str(token)!r}", column=token.column or 1, line=token.line or 1)


# ---- the tree to conditions ----------------------------------------------------------------------------------


def _build(tree: object, source: str) -> Node:
    from lark import Token, Tree

    assert isinstance(tree, Tree)
    kind = tree.data
    if kind in ("disj", "conj"):
        parts = tuple(_build(child, source) for child in tree.children if isinstance(child, Tree))
        return AnyOf(parts) if kind == "disj" else AllOf(parts)
    tokens = [child for child in tree.children if isinstance(child, Token)]
    text = source[tree.meta.start_pos : tree.meta.end_pos] if not tree.meta.empty else ""
    text = " ".join(text.split())
    if kind == "match":
        return OutputMatch(_regex(tokens[-1]), text)
    if kind == "noderuns":
        name_token, op, quantity = tokens
        name = _unquote(name_token) if name_token.type == "STRING" else str(name_token)
        if not name:
            raise _at(name_token, "the node name is empty")
        return NodeRuns(_op(op), _whole(quantity, "runs"), node=name, text=text)
    if kind == "compare":
        measure, op, quantity = tokens[:3]
        windows = [child for child in tree.children if isinstance(child, Tree) and child.data == "window"]
        window = windows[0].children[0] if windows else None
        return _compare(str(measure), measure, _op(op), quantity, window, text)
    raise AssertionError(f"unknown rule {kind}")  # pragma: no cover


def _compare(name: str, at: Token, op: Op, quantity: Token, window: object, text: str) -> Condition:
    from lark import Token

    if name not in MEASURES:
        raise _at(
            at, f'unknown measure {name!r}; use one of {", ".join(MEASURES)}, node NAME runs, or output ~ "regex"'
        )
    if window is not None and name not in ("failures", "retries"):
        assert isinstance(window, Token)
        raise _at(window, f"'within' goes with failures or retries, not {name}")
    if name == "cost_usd":
        return Budget(op, _dollars(quantity), measure="cost_usd", text=text)
    if name == "tokens":
        return Budget(op, _count(quantity), measure="tokens", text=text)
    if name == "running":
        return Running(op, _duration(quantity), text=text)
    if name == "tool_repeats":
        return ToolRepeats(op, _whole(quantity, "calls"), text=text)
    window_s = None
    if window is not None:
        assert isinstance(window, Token)
        window_s = _duration(window)
        if window_s <= 0:
            raise _at(window, "the window must be longer than zero")
    kind: Literal["failures", "retries"] = "failures" if name == "failures" else "retries"
    return Failures(op, _whole(quantity, name), kind=kind, window_s=window_s, text=text)


def _at(token: Token, message: str) -> WatchSyntaxError:
    return WatchSyntaxError(message, column=token.column or 1, line=token.line or 1)


def _op(token: Token) -> Op:
    if str(token) == ">":
        return ">"
    if str(token) == ">=":
        return ">="
    raise _at(token, f"use > or >= (a watchpoint fires when a value grows past a limit), not {str(token)!r}")


# k for thousands, M for millions (a lowercase m would read as minutes elsewhere in the language).
_AMOUNT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kKM]?)")
_SCALE = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000}


def _dollars(token: Token) -> float:
    text = str(token).removeprefix("$")
    try:
        return float(text)
    except ValueError:
        raise _at(token, f"cost_usd needs {MEASURES['cost_usd']}, got {str(token)!r}") from None


def _count(token: Token) -> float:
    found = _AMOUNT.fullmatch(str(token))
    if found is None:
        raise _at(token, f"tokens needs {MEASURES['tokens']}, got {str(token)!r}")
    return float(found.group(1)) * _SCALE[found.group(2)]


def _whole(token: Token, what: str) -> float:
    text = str(token)
    if not text.isdigit() or int(text) < 1:
        raise _at(token, f"expected a whole number of {what} (1 or more), got {text!r}")
    return float(int(text))


def _duration(token: Token) -> float:
    try:
        return parse_duration(str(token))
    except ValueError:
        raise _at(token, f"expected {MEASURES['running']}, got {str(token)!r}") from None


def _unquote(token: Token) -> str:
    """The text between the quotes, with ``\\"`` (or ``\\'``) standing for the quote; other backslashes stay."""
    text = str(token)
    quote = text[0]
    return text[1:-1].replace("\\" + quote, quote)


def _regex(token: Token) -> regex.Pattern[str]:
    pattern = _unquote(token)
    if not pattern:
        raise _at(token, "the regular expression is empty (it would match every line)")
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        pos, msg = getattr(exc, "pos", None), getattr(exc, "msg", str(exc))  # set by regex; not in its stubs
        column = (token.column or 1) + 1 + (pos or 0)
        raise WatchSyntaxError(f"bad regular expression: {msg}", column=column, line=token.line or 1) from None
