"""Line splitting and secret redaction of sandbox output (shared by every backend): whole lines from any chunking,
bounded pieces of an endless line, invalid UTF-8, and secrets replaced whole, even across lines."""

from __future__ import annotations

from engine.sandbox import REDACTED
from engine.sandbox._lines import MAX_LINE_CHARS, LineSplitter, Redactor


def test_lines_are_whole_even_when_chunks_split_characters_and_newlines() -> None:
    splitter = LineSplitter()
    data = "héllo wörld\r\nzweite Zeile\n".encode()
    lines: list[str] = []
    for i in range(len(data)):  # one byte at a time: every character and every \r\n is split somewhere
        lines.extend(splitter.feed(data[i : i + 1]))
    assert lines == ["héllo wörld", "zweite Zeile"]
    assert splitter.flush() == []


def test_an_endless_line_is_delivered_in_bounded_pieces() -> None:
    splitter = LineSplitter()
    pieces = splitter.feed(b"x" * (MAX_LINE_CHARS * 2 + 10))
    assert [len(piece) for piece in pieces] == [MAX_LINE_CHARS, MAX_LINE_CHARS]
    assert splitter.flush() == ["x" * 10]


def test_invalid_utf8_does_not_break_the_stream() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"ok \xff\xfe here\n") == ["ok \ufffd\ufffd here"]


def test_redaction_hides_longer_secrets_whole_and_ignores_empty_ones() -> None:
    redact = Redactor(["abc", "abcdef", ""])
    assert redact("key=abcdef and abc") == f"key={REDACTED} and {REDACTED}"
    assert redact("nothing secret") == "nothing secret"


def test_a_multi_line_secret_is_redacted_line_by_line() -> None:
    splitter = LineSplitter(redact=['{\n  "key": "MIIsecretbody"\n}'])
    lines = splitter.feed(b'{\n  "key": "MIIsecretbody"\n}\n')
    assert lines == ["{", REDACTED, "}"]
