"""Turning a byte stream into redacted text lines as the bytes arrive (shared by every sandbox backend)."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence

from engine.sandbox.base import REDACTED

#: A line longer than this many characters is delivered in pieces, so one endless line cannot exhaust memory.
MAX_LINE_CHARS = 64 * 1024

#: The shortest line of a multi-line secret that is redacted on its own.
MIN_SECRET_LINE_CHARS = 4


class Redactor:
    """Replaces secret values with ``***``.

    Longer secrets are replaced first, so a secret that contains a shorter one is hidden whole. Empty values are
    ignored (they would match everywhere). Output is redacted per line, where a multi-line secret never appears
    whole, so each of its lines is a secret of its own, except lines shorter than
    :data:`MIN_SECRET_LINE_CHARS` (a lone ``}`` of a JSON key file would otherwise vanish from all output).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        pieces: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            pieces.add(secret)
            pieces.update(part for part in secret.splitlines() if len(part.strip()) >= MIN_SECRET_LINE_CHARS)
        self._secrets = sorted(pieces, key=len, reverse=True)

    @property
    def active(self) -> bool:
        """Whether there is anything to redact."""
        return bool(self._secrets)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line


class LineSplitter:
    """Feeds on chunks of bytes and yields complete lines (without ``\\n`` or ``\\r\\n``) as soon as they are whole.

    Bytes are decoded as UTF-8 incrementally (a character split across chunks is kept whole; invalid bytes become
    U+FFFD). :meth:`flush` returns the final line that had no newline.
    """

    def __init__(self, redact: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._redact = Redactor(redact)

    def feed(self, chunk: bytes) -> list[str]:
        """The lines completed by ``chunk``, redacted."""
        text = self._pending + self._decoder.decode(chunk)
        *lines, self._pending = text.split("\n")
        # Per line only what is needed: a flood is hundreds of thousands of lines a second.
        if "\r" in text:
            lines = [line.removesuffix("\r") for line in lines]
        if self._redact.active:
            lines = [self._redact(line) for line in lines]
        while len(self._pending) > MAX_LINE_CHARS:
            lines.append(self._redact(self._pending[:MAX_LINE_CHARS]))
            self._pending = self._pending[MAX_LINE_CHARS:]
        return lines

    def flush(self) -> list[str]:
        """The last line if the stream ended without a newline (empty list otherwise)."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [self._finish(rest)] if rest else []

    def _finish(self, line: str) -> str:
        return self._redact(line.removesuffix("\r"))
