"""Errors a user causes with a workflow file: each knows the file and line it points at."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Longest text from a file quoted in a message; longer names and values are cut short.
_SHOWN_CHARACTERS = 60


class SpecError(Exception):
    """One problem in a workflow spec, printed as ``path:line: message``.

    Attributes:
        path: The file the problem is in (``None`` for specs built in Python).
        line: The 1-based line the problem is at, when known.
        message: What is wrong, without the location.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    @property
    def errors(self) -> list[SpecError]:
        """Every problem this error stands for: just itself (see `SpecErrors`)."""
        return [self]

    def __str__(self) -> str:
        if self.path is not None and self.line is not None:
            return f"{self.path}:{self.line}: {self.message}"
        if self.path is not None:
            return f"{self.path}: {self.message}"
        if self.line is not None:
            return f"line {self.line}: {self.message}"
        return self.message


class SpecErrors(SpecError):
    """Several problems found in one spec, sorted by line; ``str()`` prints one ``path:line: message`` per line.

    ``path`` and ``line`` are those of the first problem; ``message`` is the whole report.
    """

    def __init__(self, errors: Iterable[SpecError]) -> None:
        ordered = sort_errors(errors)
        if not ordered:
            raise ValueError("SpecErrors needs at least one error")
        Exception.__init__(self, ordered)
        self._errors = ordered
        self.path = ordered[0].path
        self.line = ordered[0].line
        self.message = "\n".join(str(error) for error in ordered)

    @property
    def errors(self) -> list[SpecError]:
        return list(self._errors)

    def __str__(self) -> str:
        return self.message


def sort_errors(errors: Iterable[SpecError]) -> list[SpecError]:
    """Flatten `SpecErrors`, drop exact repeats and sort by line (problems without a line first, in given order)."""
    seen: set[tuple[str | None, int | None, str]] = set()
    flat: list[SpecError] = []
    for error in errors:
        for single in error.errors:
            key = (single.path, single.line, single.message)
            if key not in seen:
                seen.add(key)
                flat.append(single)
    return sorted(flat, key=lambda error: error.line or 0)


def raise_if_any(errors: Iterable[SpecError]) -> None:
    """Raise nothing, the one error, or a `SpecErrors` holding them all."""
    ordered = sort_errors(errors)
    if len(ordered) == 1:
        raise ordered[0]
    if ordered:
        raise SpecErrors(ordered)


def clip(text: str) -> str:
    """A name or key from a file as a message shows it: control characters escaped (a key may hold a line break,
    and a message is one line), and cut short (a hostile file may hold a megabyte-long key)."""
    shown = text[:_SHOWN_CHARACTERS]
    if not shown.isprintable():
        shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in shown)
    return shown if len(text) <= _SHOWN_CHARACTERS else f"{shown}… ({len(text):,} characters)"


def show_value(value: Any) -> str:
    """Render a value from a workflow file the way the user wrote it, for messages (``'many'``, ``-1``, ``null``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _SHOWN_CHARACTERS:
            return f"{value[:_SHOWN_CHARACTERS]!r}… ({len(value):,} characters)"
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)
