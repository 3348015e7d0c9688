"""Workflow YAML to Python values that remember their lines, fast and with limits a hostile file cannot pass.

libyaml (PyYAML's C parser; its pure-Python parser where libyaml is missing) turns the text into events, and
this module builds the values from them in one loop, without recursion:

- ``LocMap`` (a dict with string keys) and ``LocSeq`` (a list) carry the line of every key, value and item, for
  ``file:line: message``; a ``|`` block's text is a ``BlockStr``.
- Scalars follow the YAML 1.2 core schema: ``on``/``yes``/``no`` stay strings, ``010`` is ten, ``0o10`` is eight.
- Duplicate keys are refused; ``<<`` merge keys work; a mapping key must be a plain value.
- Limits: nesting deeper than `MAX_DEPTH`, aliases expanding to more than `MAX_ALIAS_VALUES` values (a "billion
  laughs" bomb), a recursive alias, and a second document are errors at their line.

Aliases are shared, not copied, here: the alias limit is what bounds the copies later steps make.
Measured on 50,000 tasks: ~30 µs of CPU per task (1.5 s), where ruamel's round-trip loader, used before, took
~0.7 ms per task (36 s).
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from engine.spec.errors import SpecError, clip

#: Deepest nesting of mappings and lists a workflow file may have (aliases count at the depth they expand to).
MAX_DEPTH = 100
#: Most values (scalars, mappings, lists) that aliases (``*name``, ``<<: *name``) may add to a file, in all.
MAX_ALIAS_VALUES = 1_000_000

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_TRUES = frozenset(("true", "True", "TRUE"))
_FALSES = frozenset(("false", "False", "FALSE"))
_WORD_START = frozenset("~nNtTfF")  # null, true, false
_NUMBER_START = frozenset("0123456789+-.")
_INT = re.compile(r"[-+]?[0-9]+")
_OCTAL = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INFINITY = re.compile(r"([-+]?)\.(?:inf|Inf|INF)")
_NAN = frozenset((".nan", ".NaN", ".NAN"))
_CORE = "tag:yaml.org,2002:"


class LocMap(dict[str, Any]):
    """A YAML mapping; keys are strings (``1:`` becomes ``"1"``), and each key and value knows its line."""

    __slots__ = ("key_lines", "line", "value_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.value_lines: dict[str, int] = {}


class LocSeq(list[Any]):
    """A YAML list whose items know their lines."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class BlockStr(str):
    """The text of a ``|`` block: it starts on the line after the one its value is located at."""

    __slots__ = ()


class _Frame:
    """A mapping or list being built: its value, where the next key goes, what it adds up to."""

    __slots__ = ("anchor", "has_merge", "height", "is_map", "key", "key_line", "line", "merges", "size", "value")

    def __init__(self, value: LocMap | LocSeq, line: int, anchor: str | None) -> None:
        self.value: Any = value  # a LocMap when is_map, else a LocSeq (checked once, not on every use)
        self.is_map = isinstance(value, LocMap)
        self.line = line
        self.anchor = anchor
        self.size = 1  # values it holds once aliases are expanded, itself included
        self.height = 1  # levels of nesting it holds, itself included
        self.key: Any = _NO_KEY
        self.key_line = line
        self.merges: list[LocMap] = []
        self.has_merge = False


_NO_KEY = object()
_MERGE = object()


def compose(text: str, path: str) -> Any:
    """The one YAML document in ``text`` as `LocMap` / `LocSeq` / scalars (``None`` for an empty file).

    Raises:
        SpecError: The text is not YAML, or breaks one of the rules or limits above; located at its line.
    """
    parser = _LOADER(text)
    try:
        return _Composer(path).run(parser.get_event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot be parsed"
        raise SpecError(f"invalid YAML: {problem}", path=path, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", path=path) from None
    finally:
        parser.dispose()


class _Composer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.root: Any = None
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, size, height)
        self.open_anchors: set[str] = set()
        self.alias_values = 0
        self.documents = 0

    def error(self, message: str, line: int) -> SpecError:
        return SpecError(message, path=self.path, line=line)

    def run(self, next_event: Any) -> Any:
        """Build the document from events until the stream ends. One loop with local names: it runs per event."""
        stack = self.stack
        place = self.place
        while True:
            event = next_event()
            kind = event.__class__
            if kind is ScalarEvent:
                line = event.start_mark.line + 1
                value = self.scalar(event, line)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1, 0)
                if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
                    # `<<` is a merge key when written plain; `"<<"` is just a key.
                    merge = value == "<<" and event.tag is None and event.implicit[0]
                    self.set_key(stack[-1], _MERGE if merge else value, line)
                else:
                    place(value, line, 1, 0)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                line = event.start_mark.line + 1
                if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
                    raise self.error("a mapping key must be a plain value, not a mapping or a list", line)
                if len(stack) >= MAX_DEPTH:
                    raise self.error(f"nested more than {MAX_DEPTH} levels deep (the limit)", line)
                collection: LocMap | LocSeq = LocMap(line) if kind is MappingStartEvent else LocSeq(line)
                stack.append(_Frame(collection, line, event.anchor))
                if event.anchor is not None:
                    self.open_anchors.add(event.anchor)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                if frame.merges:
                    _merge_into(frame.value, frame.merges)
                if frame.anchor is not None:
                    self.open_anchors.discard(frame.anchor)
                    self.anchors[frame.anchor] = (frame.value, frame.size, frame.height)
                place(frame.value, frame.line, frame.size, frame.height)
            elif kind is AliasEvent:
                self.alias(event.anchor, event.start_mark.line + 1)
            elif kind is DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    line = event.start_mark.line + 1
                    raise self.error("a second YAML document ('---'); a workflow file holds exactly one", line)
            elif kind is StreamEndEvent:
                return self.root

    def alias(self, name: str, line: int) -> None:
        if name in self.open_anchors:
            raise self.error(f"alias '*{clip(name)}' refers to a value that contains it (a recursive alias)", line)
        found = self.anchors.get(name)
        if found is None:
            raise self.error(f"alias '*{clip(name)}' refers to no anchor ('&{clip(name)}' must come first)", line)
        value, size, height = found
        self.alias_values += size
        if self.alias_values > MAX_ALIAS_VALUES:
            raise self.error(f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (the limit)", line)
        if len(self.stack) + height > MAX_DEPTH:
            raise self.error(f"alias '*{clip(name)}' nests more than {MAX_DEPTH} levels deep (the limit)", line)
        stack = self.stack
        if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
            if isinstance(value, LocMap | LocSeq):
                raise self.error("a mapping key must be a plain value, not a mapping or a list", line)
            self.set_key(stack[-1], value, line)
        else:
            self.place(value, line, size, height)

    def set_key(self, frame: _Frame, key: Any, line: int) -> None:
        if key is not _MERGE:
            key = key if type(key) is str else str(key)
            if key in frame.value:
                raise self.error(f"duplicate key '{clip(key)}'", line)
        elif frame.has_merge:
            raise self.error("duplicate key '<<'", line)
        else:
            frame.has_merge = True
        frame.key = key
        frame.key_line = line
        frame.size += 1

    def place(self, value: Any, line: int, size: int, height: int) -> None:
        """Put a finished value where it goes: the root, the next list item, or the value of the pending key."""
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.size += size
        if height >= top.height:
            top.height = height + 1
        if not top.is_map:
            top.value.append(value)
            top.value.item_lines.append(line)
            return
        key = top.key
        top.key = _NO_KEY
        if key is _MERGE:
            self.add_merge(top, value, line)
            return
        mapping: LocMap = top.value
        mapping[key] = value
        mapping.key_lines[key] = top.key_line
        mapping.value_lines[key] = line

    def add_merge(self, frame: _Frame, value: Any, line: int) -> None:
        sources = value if isinstance(value, LocSeq) else [value]
        if not all(isinstance(source, LocMap) for source in sources):
            raise self.error("a merge key '<<' takes a mapping or a list of mappings", line)
        frame.merges.extend(sources)

    def scalar(self, event: Any, line: int) -> Any:
        value: str = event.value
        tag = event.tag
        if tag is None:
            if event.implicit[0]:
                return _plain(value)
            return BlockStr(value) if event.style == "|" else value
        if tag.startswith(_CORE):
            return _tagged(value, tag[len(_CORE) :], self.error, line)
        return value  # `!` and tags of other vocabularies: the text as written


def _merge_into(mapping: LocMap, sources: list[LocMap]) -> None:
    # Keys written in the mapping win over merged ones; among merged mappings, earlier ones win (YAML merge spec).
    for source in sources:
        for key, value in source.items():
            if key not in mapping:
                mapping[key] = value
                mapping.key_lines[key] = source.key_lines[key]
                mapping.value_lines[key] = source.value_lines[key]


def _plain(value: str) -> Any:
    """A plain (unquoted, untagged) scalar in the YAML 1.2 core schema."""
    if not value:
        return None
    first = value[0]
    if first in _WORD_START:
        if value in _NULLS:
            return None
        if value in _TRUES:
            return True
        if value in _FALSES:
            return False
        return value
    if first in _NUMBER_START:
        number = _number(value)
        return value if number is None else number
    return value


def _number(value: str) -> int | float | None:
    try:
        if _INT.fullmatch(value):
            return int(value)
        if _OCTAL.fullmatch(value):
            return int(value[2:], 8)
        if _HEX.fullmatch(value):
            return int(value[2:], 16)
    except ValueError:  # more digits than Python converts (4,300): leave it text, validation will say so
        return None
    if _FLOAT.fullmatch(value):
        return float(value)
    infinity = _INFINITY.fullmatch(value)
    if infinity is not None:
        return -math.inf if infinity.group(1) == "-" else math.inf
    if value in _NAN:
        return math.nan
    return None


def _tagged(value: str, name: str, error: Any, line: int) -> Any:
    """A scalar with an explicit core tag (``!!str 10``, ``!!int "10"``)."""
    if name == "str":
        return value
    if name == "null" and value in _NULLS:
        return None
    if name == "bool" and (value in _TRUES or value in _FALSES):
        return value in _TRUES
    if name in ("int", "float"):
        number = _number(value)
        if isinstance(number, int) or (name == "float" and number is not None):
            return float(number) if name == "float" else number
    if name in ("null", "bool", "int", "float"):
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise error(f"'!!{name} {shown}' is not a valid {name}", line)
    return value  # !!binary, !!timestamp and the like: the text as written
